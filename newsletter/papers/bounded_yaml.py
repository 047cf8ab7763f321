"""`yaml.safe_load` with a bound on what aliases stand for ("billion laughs").

An alias (`*a`) is a shared reference, so loading a document of nested aliases is cheap,
but anything that walks the result (validation, an error message, JSON for the database)
walks every expansion: nine levels of nine aliases are 387 million values. While
composing, each node's expanded size is counted and a document whose aliases stand for
more than MAX_ALIASED_NODES nodes in all is refused before any Python object is built.
Nodes written out in the file are not limited here: their number is bounded by its size.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_ALIASED_NODES = 10_000  # far above any anchor a paper or sources file needs


class TooManyAliases(yaml.YAMLError):
    """The document's aliases expand past the bound; the message names the line."""


class _BoundedSafeLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}  # id(node) -> nodes it stands for, itself included
        self._aliased = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)  # the anchored node (or an error)
            self._aliased += self._sizes.get(id(node), 1)
            if self._aliased > MAX_ALIASED_NODES:
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise TooManyAliases(
                    f"has aliases (*{event.anchor}, line {line}) that stand for more than "
                    f"{MAX_ALIASED_NODES:,} values; write the values out instead"
                )
            return node
        node = super().compose_node(parent, index)
        size = 1
        if isinstance(node, SequenceNode):
            size += sum(self._sizes.get(id(child), 1) for child in node.value)
        elif isinstance(node, MappingNode):
            size += sum(
                self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value
            )
        if size > 1:  # scalars count 1 without an entry
            self._sizes[id(node)] = size
        return node


def safe_load(text: str) -> Any:
    """Like `yaml.safe_load`; raises TooManyAliases (a YAMLError) for an alias bomb."""
    loader = _BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
