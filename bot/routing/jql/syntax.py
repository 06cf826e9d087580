"""JQL text to a syntax tree: a tokenizer and a recursive-descent parser, written by hand.

Why hand-written rather than a parsing library (lark is installed): JQL is small (clauses joined by
AND / OR / NOT and parentheses), and what users need most is a precise error —
`column 23: expected a value after "="` — which a one-token-lookahead parser gives for free at the
exact token where it stops. Each token is consumed once and never re-read, so parsing is linear in
the length of the text; `steps` counts the tokens consumed and the fuzz tests assert it stays
linear. The text is limited to `MAX_LENGTH` characters and parentheses/NOT to `MAX_DEPTH` levels.

Columns count from 1, in characters of the text as typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

MAX_LENGTH = 4000
MAX_DEPTH = 24


class JqlError(ValueError):
    """JQL that cannot be evaluated here; `column` (from 1) points where the problem starts, 0 when
    the problem is the query as a whole."""

    def __init__(self, message: str, column: int = 0) -> None:
        super().__init__(f"column {column}: {message}" if column else message)
        self.problem = message
        self.column = column


class Tok(Enum):
    WORD = "word"  # unquoted word: field, value, keyword, function name
    STRING = "string"  # quoted value
    OP = "operator"
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","
    END = "end"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Tok
    text: str  # the value (unescaped for strings; the operator for OP)
    start: int  # 0-based offset of the token in the source
    end: int

    @property
    def column(self) -> int:
        return self.start + 1

    def upper(self) -> str:
        return self.text.upper() if self.kind is Tok.WORD else ""

    def describe(self) -> str:
        if self.kind is Tok.END:
            return "the end of the query"
        if self.kind is Tok.STRING:
            return f'"{self.text}"'
        return f'"{self.text}"'


# Characters that end an unquoted word (Jira's reserved characters that matter to the grammar).
_WORD_STOP = frozenset(" \t\r\n\f\v()\",'=!<>~&|[]")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", " ": " "}


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, ending with an END token. Raises JqlError at the first bad character."""
    if len(text) > MAX_LENGTH:
        raise JqlError(f"the query is longer than {MAX_LENGTH} characters")
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        start = i
        if ch == "(":
            tokens.append(Token(Tok.LPAREN, "(", i, i + 1))
            i += 1
        elif ch == ")":
            tokens.append(Token(Tok.RPAREN, ")", i, i + 1))
            i += 1
        elif ch == ",":
            tokens.append(Token(Tok.COMMA, ",", i, i + 1))
            i += 1
        elif ch in "\"'":
            i, value = _quoted(text, i)
            tokens.append(Token(Tok.STRING, value, start, i))
        elif ch in "=!<>~":
            two = text[i : i + 2]
            if two in ("!=", ">=", "<=", "!~"):
                tokens.append(Token(Tok.OP, two, i, i + 2))
                i += 2
            elif ch == "!":
                raise JqlError('"!" must be followed by "=" or "~" (or write NOT)', i + 1)
            else:
                tokens.append(Token(Tok.OP, ch, i, i + 1))
                i += 1
        elif ch in "&|":
            two = text[i : i + 2]
            word = "AND" if ch == "&" else "OR"
            length = 2 if two in ("&&", "||") else 1
            tokens.append(Token(Tok.WORD, word, i, i + length))
            i += length
        elif ch in "[]":
            raise JqlError(f'unexpected "{ch}" (custom fields are written cf[10072])', i + 1)
        else:
            i, value = _word(text, i)
            tokens.append(Token(Tok.WORD, value, start, i))
    tokens.append(Token(Tok.END, "", n, n))
    return tokens


def _quoted(text: str, i: int) -> tuple[int, str]:
    quote = text[i]
    out: list[str] = []
    j = i + 1
    n = len(text)
    while j < n:
        ch = text[j]
        if ch == "\\":
            if j + 1 >= n:
                break
            nxt = text[j + 1]
            if nxt == "u" and j + 5 < n + 0 and _is_hex(text[j + 2 : j + 6]):
                out.append(chr(int(text[j + 2 : j + 6], 16)))
                j += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            j += 2
            continue
        if ch == quote:
            return j + 1, "".join(out)
        out.append(ch)
        j += 1
    raise JqlError(f"the quoted text starting here has no closing {quote}", i + 1)


def _is_hex(s: str) -> bool:
    return len(s) == 4 and all(c in "0123456789abcdefABCDEF" for c in s)


def _word(text: str, i: int) -> tuple[int, str]:
    out: list[str] = []
    j, n = i, len(text)
    while j < n:
        ch = text[j]
        if ch == "\\" and j + 1 < n:
            out.append(_ESCAPES.get(text[j + 1], text[j + 1]))
            j += 2
            continue
        if ch in _WORD_STOP:
            # cf[10072]: brackets belong to the custom field reference
            if ch == "[" and "".join(out).lower() == "cf":
                close = text.find("]", j)
                if close < 0:
                    raise JqlError('"cf[" has no closing "]"', j + 1)
                out.append(text[j : close + 1])
                j = close + 1
                continue
            break
        out.append(ch)
        j += 1
    return j, "".join(out)


# --- The syntax tree -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Value:
    """A literal: `text` as written (unescaped), `quoted` when it was in quotes."""

    text: str
    quoted: bool
    column: int


@dataclass(frozen=True, slots=True)
class Function:
    name: str  # as written
    args: tuple[str, ...]
    column: int


Operand = Value | Function | tuple[Value | Function, ...] | None  # tuple for IN lists; None for EMPTY


@dataclass(frozen=True, slots=True)
class Clause:
    field: str  # as written (unquoted)
    # "=", "!=", "<", "<=", ">", ">=", "~", "!~", "IN", "NOT IN", "IS", "IS NOT", and the history
    # operators "WAS", "WAS NOT", "WAS IN", "WAS NOT IN", "CHANGED"
    operator: str
    operand: Operand
    start: int  # 0-based source span of the clause
    end: int
    # The history operators' predicates, in order: ("BY", operand), ("DURING", (from, to)) ...
    history: tuple[tuple[str, Operand], ...] = ()

    @property
    def column(self) -> int:
        return self.start + 1


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MatchAll:
    """An empty query (or one with only ORDER BY): Jira returns every issue."""


Node = Clause | Not | And | Or | MatchAll

_KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "EMPTY", "NULL", "ORDER", "BY", "WAS", "CHANGED"})
_COMPARISONS = frozenset({"=", "!=", "<", "<=", ">", ">=", "~", "!~"})
HISTORY_OPERATORS = frozenset({"WAS", "WAS NOT", "WAS IN", "WAS NOT IN", "CHANGED"})
_WAS_PREDICATES = frozenset({"AFTER", "BEFORE", "ON", "BY", "DURING"})
_CHANGED_PREDICATES = _WAS_PREDICATES | {"FROM", "TO"}


@dataclass(frozen=True, slots=True)
class Parsed:
    tree: Node
    steps: int  # tokens consumed, for the linear-time tests
    order_by: tuple[str, ...] = ()
    # Where ORDER BY starts in the text (its length without one): the query before it is what
    # can be put in parentheses and combined, as a search asking Jira about one issue does.
    order_at: int | None = None


def parse(text: str) -> Parsed:
    """Parse JQL. Raises JqlError with the column of the first problem."""
    parser = _Parser(tokenize(text))
    return parser.query()


class _Parser:
    __slots__ = ("depth", "i", "steps", "tokens")

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0
        self.steps = 0

    # -- token stream --
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind is not Tok.END:
            self.i += 1
        self.steps += 1
        return tok

    def at_word(self, *words: str) -> bool:
        return self.tok.kind is Tok.WORD and self.tok.text.upper() in words

    def peek_word(self, offset: int, word: str) -> bool:
        j = min(self.i + offset, len(self.tokens) - 1)
        tok = self.tokens[j]
        return tok.kind is Tok.WORD and tok.text.upper() == word

    # -- grammar --
    def query(self) -> Parsed:
        if self.tok.kind is Tok.END or self.at_word("ORDER"):
            tree: Node = MatchAll()
        else:
            tree = self.or_expr()
        order_by: tuple[str, ...] = ()
        order_at = None
        if self.at_word("ORDER"):
            order_at = self.tok.start
            order_by = self.order_by()
        if self.tok.kind is not Tok.END:
            tok = self.tok
            if tok.kind is Tok.RPAREN:
                raise JqlError('")" closes no "("', tok.column)
            raise JqlError(f"expected AND, OR or ORDER BY before {tok.describe()}", tok.column)
        return Parsed(tree, self.steps, order_by, order_at)

    def order_by(self) -> tuple[str, ...]:
        self.advance()  # ORDER
        if not self.at_word("BY"):
            raise JqlError('expected "BY" after "ORDER"', self.tok.column)
        self.advance()
        fields: list[str] = []
        while True:
            tok = self.tok
            if tok.kind not in (Tok.WORD, Tok.STRING):
                raise JqlError("expected a field to order by", tok.column)
            self.advance()
            fields.append(tok.text)
            if self.at_word("ASC", "DESC"):
                self.advance()
            if self.tok.kind is not Tok.COMMA:
                return tuple(fields)
            self.advance()

    def or_expr(self) -> Node:
        children = [self.and_expr()]
        while self.at_word("OR"):
            self.advance()
            children.append(self.and_expr())
        return children[0] if len(children) == 1 else Or(tuple(children))

    def and_expr(self) -> Node:
        children = [self.not_expr()]
        while self.at_word("AND"):
            self.advance()
            children.append(self.not_expr())
        return children[0] if len(children) == 1 else And(tuple(children))

    def nest(self, column: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise JqlError(f"nested more than {MAX_DEPTH} levels deep", column)

    def not_expr(self) -> Node:
        if self.at_word("NOT") or (self.tok.kind is Tok.OP and self.tok.text == "!"):
            tok = self.advance()
            self.nest(tok.column)
            child = self.not_expr()
            self.depth -= 1
            return Not(child)
        return self.primary()

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind is Tok.LPAREN:
            self.advance()
            self.nest(tok.column)
            if self.tok.kind is Tok.RPAREN:
                raise JqlError('expected a clause inside "()"', self.tok.column)
            node = self.or_expr()
            self.depth -= 1
            if self.tok.kind is not Tok.RPAREN:
                raise JqlError(
                    f'expected ")" to close the "(" of column {tok.column}, found {self.tok.describe()}',
                    self.tok.column,
                )
            self.advance()
            return node
        return self.clause()

    def clause(self) -> Clause:
        field_tok = self.tok
        if field_tok.kind is Tok.END:
            raise JqlError("expected a clause such as project = ABC", field_tok.column)
        if field_tok.kind not in (Tok.WORD, Tok.STRING) or (
            field_tok.kind is Tok.WORD and field_tok.text.upper() in _KEYWORDS
        ):
            raise JqlError(f"expected a field name, found {field_tok.describe()}", field_tok.column)
        self.advance()
        op_tok = self.tok
        operator = self.operator(field_tok)
        if operator in HISTORY_OPERATORS:
            operand = None if operator == "CHANGED" else self.history_operand(operator, op_tok)
            history = self.history_predicates(operator)
            end = self.tokens[self.i - 1].end
            return Clause(field_tok.text, operator, operand, field_tok.start, end, history)
        operand = self.operand(operator, op_tok)
        end = self.tokens[self.i - 1].end
        return Clause(field_tok.text, operator, operand, field_tok.start, end)

    def operator(self, field_tok: Token) -> str:
        tok = self.tok
        if tok.kind is Tok.OP and tok.text in _COMPARISONS:
            self.advance()
            return tok.text
        word = tok.upper()
        if word == "IN":
            self.advance()
            return "IN"
        if word == "NOT" and self.peek_word(1, "IN"):
            self.advance()
            self.advance()
            return "NOT IN"
        if word == "IS":
            self.advance()
            if self.at_word("NOT"):
                self.advance()
                return "IS NOT"
            return "IS"
        if word == "CHANGED":
            self.advance()
            return "CHANGED"
        if word == "WAS":
            self.advance()
            operator = "WAS"
            if self.at_word("NOT"):
                self.advance()
                operator = "WAS NOT"
            if self.at_word("IN"):
                self.advance()
                operator += " IN"
            return operator
        raise JqlError(
            f'expected an operator (=, !=, ~, IN, IS ...) after "{field_tok.text}", found {tok.describe()}',
            tok.column,
        )

    def operand(self, operator: str, op_tok: Token) -> Operand:
        tok = self.tok
        if operator in ("IS", "IS NOT"):
            if not self.at_word("EMPTY", "NULL"):
                raise JqlError(f'expected EMPTY or NULL after "{operator}"', tok.column)
            self.advance()
            return None
        if operator in ("IN", "NOT IN"):
            if tok.kind is Tok.WORD and self.tokens[self.i + 1].kind is Tok.LPAREN:
                return self.single(operator)  # a function returning a list: membersOf(...)
            if tok.kind is not Tok.LPAREN:
                raise JqlError(f'expected "(" and a list of values after "{operator}"', tok.column)
            self.advance()
            items: list[Value | Function] = []
            while True:
                item = self.single(operator)
                if item is None:
                    raise JqlError(
                        'EMPTY cannot be in a list; write "field IS EMPTY"', self.tokens[self.i - 1].column
                    )
                items.append(item)
                if self.tok.kind is Tok.COMMA:
                    self.advance()
                    continue
                if self.tok.kind is Tok.RPAREN:
                    self.advance()
                    return tuple(items)
                raise JqlError(
                    f'expected "," or ")" in the list, found {self.tok.describe()}', self.tok.column
                )
        return self.single(operator)

    def history_operand(self, operator: str, op_tok: Token) -> Operand:
        """The value after WAS / WAS NOT (one value or EMPTY) or WAS [NOT] IN (a list)."""
        if operator.endswith("IN"):
            return self.operand("IN", op_tok)
        return self.single(operator)

    def history_predicates(self, operator: str) -> tuple[tuple[str, Operand], ...]:
        """AFTER, BEFORE, ON, BY, DURING (and FROM, TO after CHANGED), each with its value."""
        allowed = _CHANGED_PREDICATES if operator == "CHANGED" else _WAS_PREDICATES
        found: list[tuple[str, Operand]] = []
        while self.tok.kind is Tok.WORD and self.tok.text.upper() in _CHANGED_PREDICATES:
            tok = self.advance()
            word = tok.text.upper()
            if word not in allowed:
                raise JqlError(f"{word} goes with CHANGED, not with {operator}", tok.column)
            if word == "DURING":
                during = self.operand("IN", tok)  # ("from", "to")
                if not isinstance(during, tuple) or len(during) != 2:
                    raise JqlError('DURING takes two dates: DURING ("2026-01-01", "2026-01-31")', tok.column)
                found.append((word, during))
            elif word == "BY" and self.tok.kind is Tok.LPAREN:
                found.append((word, self.operand("IN", tok)))
            else:
                value_tok = self.tok
                value = self.single(word)
                if value is None and word in ("AFTER", "BEFORE", "ON"):
                    raise JqlError(f"expected a date after {word}", value_tok.column)
                found.append((word, value))
        return tuple(found)

    def single(self, operator: str) -> Value | Function | None:
        tok = self.tok
        if tok.kind is Tok.STRING:
            self.advance()
            return Value(tok.text, True, tok.column)
        if tok.kind is Tok.WORD:
            word = tok.text.upper()
            if word in ("EMPTY", "NULL"):
                self.advance()
                return None
            if word in _KEYWORDS:
                raise JqlError(f'expected a value after "{operator}", found {tok.describe()}', tok.column)
            self.advance()
            if self.tok.kind is Tok.LPAREN:
                return self.function(tok)
            return Value(tok.text, False, tok.column)
        raise JqlError(f'expected a value after "{operator}"', tok.column)

    def function(self, name: Token) -> Function:
        self.advance()  # (
        args: list[str] = []
        if self.tok.kind is Tok.RPAREN:
            self.advance()
            return Function(name.text, (), name.column)
        while True:
            tok = self.tok
            if tok.kind not in (Tok.WORD, Tok.STRING):
                raise JqlError(f"expected an argument of {name.text}(), found {tok.describe()}", tok.column)
            self.advance()
            args.append(tok.text)
            if self.tok.kind is Tok.COMMA:
                self.advance()
                continue
            if self.tok.kind is Tok.RPAREN:
                self.advance()
                return Function(name.text, tuple(args), name.column)
            raise JqlError(
                f'expected "," or ")" in the arguments of {name.text}(), found {self.tok.describe()}',
                self.tok.column,
            )
