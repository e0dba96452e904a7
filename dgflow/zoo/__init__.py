"""Model zoo: pretrained generator/critic pairs, resolved locally or from the Hugging Face Hub.

    m = dgflow.zoo.load("toy2d-25gaussians-wgangp")
    z = m.generator.sample_prior(1000)
    z_ref = dgflow.refine(m.generator, m.critic, z, **m.refine_kwargs)

Registry: the project's ``model_zoo.yaml`` (its header documents the entry format), files
listed in ``DGFLOW_ZOO`` and the ``zoo=`` argument (see docs/zoo.md). Weights: the entry's local
``path`` if present, else ``huggingface_hub.hf_hub_download`` (honouring ``HF_HUB_OFFLINE``,
``HF_HOME``/``HF_HUB_CACHE``, ``cache_dir`` and ``local_files_only``); sha256 always verified;
safetensors only.
"""
from .authoring import entry_yaml, register
from .errors import (ChecksumError, UnknownModelError, WeightsNotAvailableError, ZooEntryError,
                     ZooError)
from .loader import ZooModel, import_object, load, weight_files
from .registry import ENV_VAR, PACKAGED_ZOO, Registry, entries, load_registry, names, validate_entry
from .weights import WeightsFile, availability, fetch, hub_cache_dir, offline_mode

__all__ = ["load", "names", "entries", "register", "ZooModel", "ZooError", "UnknownModelError",
           "ZooEntryError", "WeightsNotAvailableError", "ChecksumError", "WeightsFile", "Registry",
           "load_registry", "weight_files", "fetch", "availability", "hub_cache_dir", "offline_mode",
           "validate_entry", "entry_yaml", "import_object", "ENV_VAR", "PACKAGED_ZOO"]
