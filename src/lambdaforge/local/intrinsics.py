"""Resolving CloudFormation intrinsic functions for the local cloud.

The subset the template uses (Ref, GetAtt, Sub, Join, If, Equals, Not, And, Or, FindInMap, Select,
Split, GetAZs, Condition), against parameter values, pseudo parameters and the physical ids and
attributes of resources already created locally. Anything else is a clear error, not a guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lambdaforge.local.errors import TemplateError

NO_VALUE = object()
_SUB = re.compile(r"\$\{([^}]+)\}")


class Resolver:
    def __init__(self, template: dict[str, Any], parameters: dict[str, str], *, region: str, account: str,
                 stack_name: str) -> None:
        self.template = template
        self.params: dict[str, Any] = {}
        for name, spec in (template.get("Parameters") or {}).items():
            value = parameters.get(name, spec.get("Default"))
            if value is None:
                raise TemplateError(f"parameter {name} has no value and no default")
            self.params[name] = str(value) if not isinstance(value, list) else value
        unknown = set(parameters) - set(self.params)
        if unknown:
            raise TemplateError(f"unknown template parameter(s): {', '.join(sorted(unknown))}")
        self.pseudo = {"AWS::Region": region, "AWS::AccountId": account, "AWS::StackName": stack_name,
                       "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com",
                       "AWS::StackId": f"arn:aws:cloudformation:{region}:{account}:stack/{stack_name}/local"}
        self.physical: dict[str, str] = {}  # logical id -> what Ref returns
        self.attributes: dict[str, dict[str, str]] = {}  # logical id -> GetAtt values
        self._conditions: dict[str, bool] = {}

    # --- conditions
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = (self.template.get("Conditions") or {}).get(name)
            if spec is None:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(spec))
        return self._conditions[name]

    # --- values
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            handler = self._handlers().get(key)
            if handler is not None:
                return handler(arg)
            if key.startswith("Fn::"):
                raise TemplateError(f"intrinsic function {key} is not supported by the local cloud")
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in value.items()) if v is not NO_VALUE}

    def _handlers(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": self._ref, "Fn::GetAtt": self._getatt, "Fn::Sub": self._sub, "Fn::Join": self._join,
            "Fn::If": self._if, "Fn::Equals": lambda a: self.resolve(a[0]) == self.resolve(a[1]),
            "Fn::Not": lambda a: not self.resolve(a[0]), "Fn::And": lambda a: all(self.resolve(x) for x in a),
            "Fn::Or": lambda a: any(self.resolve(x) for x in a), "Condition": self.condition,
            "Fn::FindInMap": self._find_in_map, "Fn::Select": lambda a: self.resolve(a[1])[int(self.resolve(a[0]))],
            "Fn::Split": lambda a: str(self.resolve(a[1])).split(a[0]),
            "Fn::GetAZs": lambda a: [f"{self.pseudo['AWS::Region']}{z}" for z in "abc"],
        }

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.physical:
            return self.physical[name]
        raise TemplateError(f"Ref {name}: not a parameter, or a resource not created locally")

    def _getatt(self, arg: Any) -> str:
        logical, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
        try:
            return self.attributes[logical][attr]
        except KeyError:
            raise TemplateError(f"GetAtt {logical}.{attr}: not available locally") from None

    def _sub(self, arg: Any) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        values = {k: self.resolve(v) for k, v in extra.items()}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                return str(values[name])
            if "." in name:
                return self._getatt(name.split(".", 1))
            return str(self._ref(name))

        return _SUB.sub(one, text)

    def _join(self, arg: list[Any]) -> str:
        return str(arg[0]).join(str(v) for v in self.resolve(arg[1]))

    def _if(self, arg: list[Any]) -> Any:
        return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])

    def _find_in_map(self, arg: list[Any]) -> Any:
        name, top, second = (self.resolve(a) for a in arg)
        try:
            return self.template["Mappings"][name][top][second]
        except KeyError:
            raise TemplateError(f"FindInMap {name}/{top}/{second}: no such entry") from None

    # --- dependencies
    def references(self, value: Any) -> set[str]:
        """Logical ids a value refers to (for creation order)."""
        found: set[str] = set()
        if isinstance(value, list):
            for v in value:
                found |= self.references(v)
        elif isinstance(value, dict):
            for key, arg in value.items():
                if key == "Ref" and isinstance(arg, str):
                    found.add(arg)
                elif key == "Fn::GetAtt":
                    found.add(arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0])
                elif key == "Fn::Sub":
                    text = arg if isinstance(arg, str) else arg[0]
                    found |= {m.split(".", 1)[0] for m in _SUB.findall(text) if not m.startswith("!")}
                    if isinstance(arg, list):
                        found |= self.references(arg[1])
                else:
                    found |= self.references(arg)
        return found
