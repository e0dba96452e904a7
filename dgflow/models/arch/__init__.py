"""Network architectures shipped with dgflow."""
from .dcgan import DCGANDiscriminator, DCGANGenerator, SmallCNNClassifier, SNDCGANDiscriminator, WGANGPCritic
from .glow import bits_per_dim, glow, glow_generator
from .mlp import MLPCritic, MLPGenerator, mlp
from .mmdgan import MMDFeatureCritic, mix_rbf_mmd2
from .resnet import ResNetGenerator, SNResNetDiscriminator
from .text import CharCritic, CharGenerator  # noqa: F401  (character-level WGAN-GP)
from .vae import ConvVAE, negative_elbo

__all__ = ["MLPCritic", "MLPGenerator", "mlp", "DCGANGenerator", "DCGANDiscriminator", "WGANGPCritic", "SNDCGANDiscriminator",
           "SmallCNNClassifier", "ConvVAE", "negative_elbo", "glow", "glow_generator", "bits_per_dim",
           "MMDFeatureCritic", "mix_rbf_mmd2", "ResNetGenerator", "SNResNetDiscriminator"]
