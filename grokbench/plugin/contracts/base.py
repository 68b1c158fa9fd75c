"""What every component shares: ``Params``, declared capabilities, the ``Component`` base class, batchable fields."""

from __future__ import annotations

import abc
import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from pydantic import BaseModel

from grokbench.strict import StrictModel
from grokbench.version import CONTRACT


class Params(StrictModel):
    """Base class of every component's parameters: unknown keys are an error."""


#: ``json_schema_extra`` of a ``Params`` field that may differ between the runs of one batched program
#: (``Field(..., json_schema_extra=BATCHABLE)``). What it promises depends on the kind:
#:
#: * a task, model or metric field changes only what each run builds for itself (data split, initial
#:   parameters, metric), never a shape nor the training step (the step is the first run's);
#: * an optimizer or regularizer field: a ``seedwise`` component is built once with the field set to a float64
#:   tensor ``[G]`` of the runs' values (a plain number where they agree) and applies row g to slice g of every
#:   stacked tensor (see :func:`per_member`); one that is not ``seedwise`` is built per run.
BATCHABLE: dict[str, Any] = {"batchable": True}


def batchable_fields(params: type[BaseModel]) -> frozenset[str]:
    """The fields of a ``Params`` model declared :data:`BATCHABLE`."""
    return frozenset(
        name
        for name, info in params.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("batchable") is True
    )


def per_member(value: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """A hyperparameter as it applies to ``like``, stacked along a leading member dimension ``[G, ...]``: a number
    as it is; a tensor ``[G]`` (see :data:`BATCHABLE`) as ``[G, 1, ...]`` in ``like``'s dtype, to broadcast by row."""
    if not isinstance(value, torch.Tensor):
        return value
    return value.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


class Capability(NamedTuple):
    """An optional capability a class may declare in its ``capabilities``."""

    #: what declaring it promises (rendered in docs/plugins.md)
    doc: str
    #: members the declaring class must define (override); they are also the capability's own members
    requires: tuple[str, ...] = ()
    #: members the declaring class may override; overriding them without declaring it is refused
    optional: tuple[str, ...] = ()
    #: a class that defines its required members without declaring it (written before the capability existed) is
    #: taken to declare it, with a :class:`ContractDeprecationWarning` naming the fix, instead of refused: the
    #: deprecation release before the refusal
    deprecated_undeclared: bool = False


class ContractDeprecationWarning(DeprecationWarning):
    """A plugin relies on something the next plugin contract refuses: the message says what to change.

    The plugin manager shows each plugin's notices once per process (see ``PluginInfo.notices``)."""


def contract_notices(cls: type) -> tuple[str, ...]:
    """The notices of ``cls``'s own contract check (not its bases'): what its plugin's author should change."""
    return tuple(vars(cls).get("_contract_notices", ()))


def add_notice(cls: type, notice: str) -> None:
    """Record a notice of ``cls``'s contract check, once (shown with its plugin, see ``PluginInfo.notices``)."""
    if notice not in contract_notices(cls):
        type.__setattr__(cls, "_contract_notices", (*contract_notices(cls), notice))


class _ClassOrInstance:
    """A method bound to the instance when called on one, else to the class."""

    def __init__(self, fn: Callable[[Any, str], bool]):
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> Callable[[str], bool]:
        return functools.partial(self.fn, owner if obj is None else obj)


class Capable:
    """A class that declares optional capabilities: components and optimizer states."""

    #: the capabilities this class may have (names from its kind's ``CAPABILITIES``); a component whose
    #: capabilities depend on its parameters narrows them per instance with :meth:`Component.capabilities_for`
    capabilities: frozenset[str] = frozenset()
    #: the capabilities this kind knows: name -> :class:`Capability` (set by each kind's base class)
    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {}

    @_ClassOrInstance
    def supports(self, capability: str) -> bool:
        """Whether the class (or, called on an instance, the instance) declares ``capability``."""
        cls = self if isinstance(self, type) else type(self)
        return capability in self.capabilities and capability in cls.capabilities


class Component(Capable, abc.ABC):
    """Common base of tasks, models, regularizers, optimizers, metrics, executors and loggers.

    Required methods are abstract; optional ones belong to a capability of the kind's :attr:`CAPABILITIES`.
    Registration (:meth:`check_class`) refuses an unimplemented required method and checks declared
    capabilities against the members the class defines, both ways.
    """

    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: BaseModel):
        #: the validated parameters, an instance of this class's ``Params`` (typed Any so subclasses read their fields)
        self.params: Any = params
        #: the capabilities this instance has: :meth:`capabilities_for` its parameters
        own = self.capabilities_for(params)
        if not isinstance(own, frozenset) or not own <= type(self).capabilities:
            raise TypeError(
                f"{type(self).__name__}.capabilities_for returned {own!r}, not a frozenset within its capabilities "
                f"({', '.join(sorted(type(self).capabilities)) or 'none'})"
            )
        self.capabilities = own

    @classmethod
    def capabilities_for(cls, params: Any) -> frozenset[str]:
        """The capabilities a component with these parameters has: all of the class's unless overridden.

        Override it where a capability holds for some parameters only (a model homogeneous without biases);
        the class still declares every capability it may have, so registration checks its members. ``supports``
        on an instance, and every check before a run that has the instance, read the result."""
        return cls.capabilities

    @classmethod
    def description(cls) -> str:
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @classmethod
    def check_class(cls) -> None:
        """Registration's check of the class: raise ``TypeError`` with a one-line reason.

        Checks ``name``, ``Params``, required methods and declared ``capabilities``. A kind (or a plugin's
        class) may extend it, calling ``super().check_class()`` first.
        """
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__name__} has no 'name'")
        if ":" in name:
            raise TypeError(f"{cls.__name__}.name '{name}' contains ':' (reserved for plugin:name)")
        if not (isinstance(cls.Params, type) and issubclass(cls.Params, BaseModel)):
            raise TypeError(f"{cls.__name__}.Params must be a pydantic model")
        if cls.Params.model_config.get("extra") != "forbid":
            raise TypeError(
                f"{cls.__name__}.Params must reject unknown keys (extra='forbid'; subclass grokbench.plugin.contracts.Params)"
            )
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise TypeError(f"{cls.__name__} does not implement the required method(s) {', '.join(missing)}")
        check_capabilities(cls)


def _kind_base(cls: type[Capable]) -> type[Capable]:
    """The class that defines ``cls``'s ``CAPABILITIES`` (its kind's base class)."""
    return next(c for c in cls.__mro__ if "CAPABILITIES" in vars(c))


def _static(cls: type, member: str) -> Any:
    """``member`` as stored in the class dictionary that defines it (so classmethods compare by identity)."""
    return next((vars(c)[member] for c in cls.__mro__ if member in vars(c)), None)


def _defines(cls: type, base: type, member: str) -> bool:
    return _static(cls, member) is not _static(base, member)


def check_capabilities(cls: type[Capable]) -> None:
    """Raise ``TypeError`` unless ``cls`` declares known capabilities and defines their members exactly."""
    known = cls.CAPABILITIES
    if not isinstance(cls.capabilities, frozenset):
        raise TypeError(f"{cls.__name__}.capabilities must be a frozenset of names")
    unknown = sorted(cls.capabilities - set(known))
    if unknown:
        raise TypeError(
            f"{cls.__name__} declares unknown capability '{unknown[0]}' (known: {', '.join(sorted(known)) or 'none'})"
        )
    base = _kind_base(cls)
    for cap, spec in known.items():
        if cap in cls.capabilities:
            missing = [m for m in spec.requires if not _defines(cls, base, m)]
            if missing:
                raise TypeError(f"{cls.__name__} declares capability '{cap}' but does not define {', '.join(missing)}")
        else:
            extra = [m for m in (*spec.requires, *spec.optional) if _defines(cls, base, m)]
            if extra and spec.deprecated_undeclared and all(_defines(cls, base, m) for m in spec.requires):
                _deprecated_undeclared(cls, cap, extra)
            elif extra:
                raise TypeError(f"{cls.__name__} defines {', '.join(extra)} without declaring capability '{cap}'")


def _deprecated_undeclared(cls: type[Capable], cap: str, members: list[str]) -> None:
    """Take ``cls`` to declare ``cap``, recording and warning a notice that names the fix."""
    notice = (
        f"{cls.__qualname__} defines {', '.join(members)} without declaring capability '{cap}': add it "
        f"(capabilities = frozenset({{..., '{cap}'}})); plugin contract {CONTRACT + 1} will refuse it undeclared"
    )
    cls.capabilities = cls.capabilities | {cap}
    add_notice(cls, notice)
    warnings.warn(notice, ContractDeprecationWarning, stacklevel=3)


def defines(cls: type[Capable], name: str) -> bool:
    """Whether ``cls`` (or a class between it and its kind's base) defines ``name`` itself."""
    return _defines(cls, _kind_base(cls), name)
