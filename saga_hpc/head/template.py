"""The model's chat template, rendered exactly as transformers renders it, for less.

`tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)`
looks up the template, builds the special-token map and a fresh jinja context
from the environment's globals on every call, then runs the template, whose
loop goes through the sandbox for every `message['role']`: a tenth of the
head's CPU per call at saturation (docs/reliability.md, "Load"). Here the
compiled template (transformers' own, same sandbox, filters and globals) and
the variables it sees are built once; a call only runs the template.

And when the template is a plain loop over the messages whose body reads
nothing but the message (no `loop`, no other variable, no state), what it
writes for a message depends on that message alone, so each message's piece
is rendered once (through the template itself) and looked up afterwards: an
agent resends its whole conversation every turn. Any other template is
rendered whole.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import Template, nodes

Messages = list[dict[str, Any]]

# Nodes that reach beyond the message in hand (other templates, state kept
# across iterations, the context) or define what a loop body could call later.
_OUTSIDE = (
    nodes.Assign,
    nodes.AssignBlock,
    nodes.Block,
    nodes.CallBlock,
    nodes.ContextReference,
    nodes.DerivedContextReference,
    nodes.EvalContextModifier,
    nodes.Extends,
    nodes.ExtensionAttribute,
    nodes.FromImport,
    nodes.Import,
    nodes.ImportedName,
    nodes.Include,
    nodes.InternalName,
    nodes.Macro,
    nodes.NSRef,
)


@dataclass(frozen=True)
class _Loop:
    """What a plain-loop template writes around its messages."""

    before: str  # before the loop
    after: str  # after it, without the generation prompt
    tail: str  # after it, with the generation prompt


class ChatTemplate:
    """`render(messages)` == `apply_chat_template(messages, tokenize=False,
    add_generation_prompt=True)`, byte for byte (tests/head/test_template.py)."""

    def __init__(self, template: Template, source: str, variables: dict[str, Any]) -> None:
        self._template = template
        # The context transformers gives the template: the environment's globals,
        # the special tokens, then its own arguments (later ones win, as there).
        self._variables = variables
        self._loop = _plain_loop(template, source, self._whole)
        # Evicted in the order cached: lookups run without the lock, so they do not reorder.
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._chars = 0
        self.max_chars = 16_000_000
        self._lock = threading.Lock()  # rendering runs in threads too

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> ChatTemplate | None:
        """None when the tokenizer has no chat template, or this transformers
        does not compile templates where this module expects it to."""
        try:
            from transformers.utils.chat_template_utils import _compile_jinja_template

            source = tokenizer.get_chat_template(None, None)
            template = _compile_jinja_template(source)
        except (ImportError, ValueError):
            return None
        if not isinstance(source, str) or not isinstance(template, Template):
            return None
        variables = {
            **template.globals,
            **tokenizer.special_tokens_map,
            "tools": None,
            "documents": None,
            "add_generation_prompt": True,
        }
        return cls(template, source, variables)

    @property
    def piecewise(self) -> bool:
        """Whether messages' pieces are cached (the template is a plain loop)."""
        return self._loop is not None

    def render(self, messages: Messages) -> str:
        """The text for `messages`, ending with the assistant's turn; the template's
        own exception for messages it rejects."""
        loop = self._loop
        if loop is None:
            return self._whole(messages, True)
        out = [loop.before]
        cache = self._cache
        for message in messages:
            content = message["content"]
            cacheable = type(content) is str and len(message) == 2  # role and content only
            piece = cache.get((message["role"], content)) if cacheable else None
            out.append(piece if piece is not None else self._piece(loop, message))
        out.append(loop.tail)
        return "".join(out)

    def _whole(self, messages: Messages, generation_prompt: bool) -> str:
        # What Template.render does with these variables, without copying the
        # globals into a new dict per call: shared=True takes ours as they are.
        variables = dict(self._variables, messages=messages)
        variables["add_generation_prompt"] = generation_prompt
        ctx = self._template.new_context(variables, shared=True)
        return "".join(self._template.root_render_func(ctx))

    def _piece(self, loop: _Loop, message: dict[str, Any]) -> str:
        """The loop's text for one message, through the template itself."""
        variables = dict(self._variables, messages=[message])
        variables["add_generation_prompt"] = False
        # A context as Template.new_context makes it, but without the set of the
        # globals' names (iterating their ChainMap was most of a piece's time):
        # jinja reads that set only when the template imports another, which a
        # plain loop does not.
        template = self._template
        env = template.environment
        ctx = env.context_class(env, variables, template.name, template.blocks)
        text = "".join(template.root_render_func(ctx))
        piece = text[len(loop.before) : len(text) - len(loop.after)]
        content = message["content"]
        if len(message) != 2 or type(content) is not str:
            return piece  # the cache key (role, content) would not be all the template sees
        key = (message["role"], content)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = piece
                self._chars += len(piece)
            while self._chars > self.max_chars:
                _, old = self._cache.popitem(last=False)
                self._chars -= len(old)
        return piece


def _plain_loop(
    template: Template, source: str, whole: Callable[[Messages, bool], str]
) -> _Loop | None:
    """What the template writes around the loop, if it is `text {% for m in
    messages %}body{% endfor %} text {% if add_generation_prompt %}text{% endif %}
    text` (text: template text only) and the body reads nothing but `m`: then
    each message's text depends on that message alone. Else None."""
    body = template.environment.parse(source).body
    loops = [i for i, node in enumerate(body) if isinstance(node, nodes.For)]
    if len(loops) != 1:
        return None
    at = loops[0]
    loop = body[at]
    assert isinstance(loop, nodes.For)
    if not (
        isinstance(loop.target, nodes.Name)
        and isinstance(loop.iter, nodes.Name)
        and loop.iter.name == "messages"
        and not loop.else_
        and loop.test is None
        and not loop.recursive
        and _reads_only(loop.body, loop.target.name)
    ):
        return None
    before = [_constant(node) for node in body[:at]]
    if any(text is None for text in before):
        return None
    if not all(_constant(node) is not None or _generation_prompt(node) for node in body[at + 1 :]):
        return None
    head = "".join(text or "" for text in before)
    after, tail = whole([], False), whole([], True)
    if not (after.startswith(head) and tail.startswith(head)):
        return None
    return _Loop(head, after[len(head) :], tail[len(head) :])


def _reads_only(body: list[nodes.Node], name: str) -> bool:
    """Whether these nodes read no variable but `name` and keep no state."""
    for node in body:
        if isinstance(node, _OUTSIDE) or any(True for _ in node.find_all(_OUTSIDE)):
            return False
        names = [node] if isinstance(node, nodes.Name) else list(node.find_all(nodes.Name))
        if any(n.name != name for n in names):
            return False
    return True


def _generation_prompt(node: nodes.Node) -> bool:
    """`{% if add_generation_prompt %}text{% endif %}`."""
    return (
        isinstance(node, nodes.If)
        and isinstance(node.test, nodes.Name)
        and node.test.name == "add_generation_prompt"
        and not node.elif_
        and not node.else_
        and all(_constant(n) is not None for n in node.body)
    )


def _constant(node: nodes.Node) -> str | None:
    """The text of an output node made of template text only, else None."""
    if not isinstance(node, nodes.Output):
        return None
    if not all(isinstance(n, nodes.TemplateData) for n in node.nodes):
        return None
    return "".join(n.data for n in node.nodes if isinstance(n, nodes.TemplateData))
