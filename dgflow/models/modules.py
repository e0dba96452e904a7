"""The ``nn.Module``s behind a model object, and freezing them for the duration of a pass.

dgflow accepts any callable as a generator or critic: an ``nn.Module``, a bound method
(``vae.decode``), a lambda or function closing over a module, a ``functools.partial``, or an
object holding modules. :func:`modules_of` finds the modules behind such an object;
:func:`frozen` switches them to eval mode with parameter gradients off and restores every flag
on exit. A module the search cannot see (reached only at call time, e.g. through an attribute
chain built inside the function) is caught when it is first called inside :func:`frozen` and
frozen then, so no model ever runs in train mode by accident.
"""
from __future__ import annotations

import functools
import logging
import types
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

logger = logging.getLogger("dgflow")

#: how deep :func:`modules_of` follows references (closure -> object -> attribute -> ...)
MAX_DEPTH = 6
#: containers with more items than this are not searched (a global data set is no model)
MAX_ITEMS = 1000
_ATOMS = (str, bytes, int, float, complex, bool, type(None), torch.Tensor, type, types.ModuleType)


def modules_of(obj: object) -> list[nn.Module]:
    """The distinct ``nn.Module``s behind ``obj``, outermost first.

    Looked through: the object itself, a bound method's owner, a ``functools.partial``'s function
    and arguments, a function's closure cells, default arguments and the global names its code
    uses, the attributes of plain objects (and the code of their ``__call__``), and lists, tuples,
    sets and dicts of those. A module is not searched further (its submodules come with it).
    """
    found: dict[int, nn.Module] = {}
    _search(obj, found, set(), 0)
    return list(found.values())


def _search(obj: object, found: dict[int, nn.Module], seen: set[int], depth: int) -> None:
    if isinstance(obj, nn.Module):
        found.setdefault(id(obj), obj)
        return
    if depth > MAX_DEPTH or isinstance(obj, _ATOMS) or id(obj) in seen:
        return
    seen.add(id(obj))
    for child in _references(obj):
        _search(child, found, seen, depth + 1)


def _references(obj: object) -> list[object]:
    """What a callable or container refers to, for :func:`modules_of`."""
    if isinstance(obj, functools.partial):
        return [obj.func, *obj.args, *obj.keywords.values()]
    if isinstance(obj, types.MethodType):
        return [obj.__self__, obj.__func__]
    if isinstance(obj, types.FunctionType):
        return _function_references(obj)
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj) if len(obj) <= MAX_ITEMS else []
    if isinstance(obj, dict):
        return list(obj.values()) if len(obj) <= MAX_ITEMS else []
    refs = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
    call = getattr(type(obj), "__call__", None)
    if isinstance(call, types.FunctionType):  # a callable object: what its __call__ uses
        refs.append(call)
    return refs if len(refs) <= MAX_ITEMS else []


def _function_references(fn: types.FunctionType) -> list[object]:
    refs: list[object] = [cell.cell_contents for cell in (fn.__closure__ or ()) if _cell_full(cell)]
    refs += list(fn.__defaults__ or ()) + list((fn.__kwdefaults__ or {}).values())
    names: set[str] = set()
    codes = [fn.__code__]
    while codes:  # the function's code and the code of functions defined inside it
        code = codes.pop()
        names.update(code.co_names)
        codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    refs += [fn.__globals__[n] for n in sorted(names) if n in fn.__globals__]
    wrapped = getattr(fn, "__wrapped__", None)  # functools.wraps decorators
    return refs if wrapped is None else [*refs, wrapped]


def _cell_full(cell: types.CellType) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell (a variable not yet assigned)
        return False
    return True


def attach_modules(parent: nn.Module, fn: object, prefix: str = "owner") -> None:
    """Register the modules behind callable ``fn`` as submodules of ``parent`` (``prefix0``,
    ``prefix1``, ...), so ``parent.to()``, ``state_dict()`` and :func:`frozen` reach them."""
    for i, m in enumerate(modules_of(fn)):
        if m is not parent:
            parent.add_module(f"{prefix}{i}", m)


class _Freezer:
    """Records and changes the training flags and ``requires_grad`` of modules, then undoes it."""

    def __init__(self, eval_mode: bool):
        self.eval_mode = eval_mode
        self.modes: dict[int, tuple[nn.Module, bool]] = {}
        self.params: dict[int, tuple[torch.Tensor, bool]] = {}

    def freeze(self, module: nn.Module) -> None:
        for sub in module.modules():
            self.modes.setdefault(id(sub), (sub, sub.training))
        for p in module.parameters():
            self.params.setdefault(id(p), (p, p.requires_grad))
            p.requires_grad_(False)
        if self.eval_mode:
            module.eval()

    def knows(self, module: nn.Module) -> bool:
        return id(module) in self.modes

    def restore(self) -> None:
        for p, flag in self.params.values():
            p.requires_grad_(flag)
        for m, flag in self.modes.values():
            m.training = flag


@contextmanager
def frozen(*models: object, eval_mode: bool = True) -> Iterator[None]:
    """Turn off parameter gradients (and train mode) of the models' modules; restore them on exit.

    Restores every parameter's ``requires_grad`` and every submodule's ``training`` flag exactly.
    When a model is not itself an ``nn.Module``, any other module that is called inside the block
    is frozen on its first call too (and restored on exit), so a module hidden from
    :func:`modules_of` never runs in train mode or accumulates gradients.
    """
    freezer = _Freezer(eval_mode)
    for model in models:
        for m in modules_of(model):
            freezer.freeze(m)
    guard = None
    if any(m is not None and not isinstance(m, nn.Module) for m in models):
        def catch(module: nn.Module, args: object) -> None:
            if not freezer.knows(module):
                logger.info("dgflow: froze %s, reached only when the model was called",
                            type(module).__name__)
                freezer.freeze(module)

        guard = nn.modules.module.register_module_forward_pre_hook(catch)
    try:
        yield
    finally:
        if guard is not None:
            guard.remove()
        freezer.restore()
