"""Text helpers for posts: wiki -> Markdown, Jira mentions, mention defusing, truncation."""

from __future__ import annotations

import random
import re

import pytest
from pyparsing import Forward

from bot.render.markup import (
    ZERO_WIDTH_JOINER,
    build_wiki_grammar,
    jira_to_markdown,
    neutralise_mentions,
    quote_lines,
    render_jira_text,
    replace_jira_mentions,
    truncate,
)

ZWJ = ZERO_WIDTH_JOINER
CONNECTED = {"5b10a2844c20165700ede21g": "jane", "bob": "bob.mm"}


def lookup(jira_id: str) -> str | None:
    return CONNECTED.get(jira_id)


# The words Mattermost's server may take for mentions (its StandardMentionParser): split on
# anything but letters, digits and ":._-@"; skip :emoji:; trim leading ":._-"; try the word, the
# word without trailing ".-:_", and, when it does not start with "@", its pieces split on ".-:".
def mattermost_mentions(text: str) -> set[str]:
    found: set[str] = set()
    for word in re.split(r"[^\w:.\-@]", text):
        if not word or (word[0] == ":" and word[-1] == ":"):
            continue
        word = word.lstrip(":._-")
        candidates = [word, word.rstrip(".-:_")]
        if not word.startswith("@"):
            candidates += re.split(r"[.\-:]", word)
        found.update(c[1:].lower() for c in candidates if re.match(r"@\w", c))
    return found


class TestTruncate:
    def test_short_text_is_kept(self) -> None:
        assert truncate("abc", 3) == "abc"

    def test_long_text_is_cut_with_an_ellipsis_within_the_limit(self) -> None:
        assert truncate("abcdefghij", 8) == "abcde..."
        assert len(truncate("x" * 5000, 3000)) == 3000

    def test_tiny_limits_cut_without_ellipsis(self) -> None:
        assert truncate("abcdef", 3) == "abc"

    def test_counts_characters_not_bytes(self) -> None:
        assert truncate("ééééé", 5) == "ééééé"
        assert truncate("éééééé", 5) == "éé..."

    def test_negative_limit_keeps_everything(self) -> None:
        assert truncate("abc", -1) == "abc"


class TestJiraToMarkdown:
    def test_bold_link_and_monospace(self) -> None:
        assert jira_to_markdown("*bold* see [docs|https://x.org/a] and {{code}}") == (
            "**bold** see [docs](https://x.org/a) and `code`"
        )

    def test_code_block_keeps_language(self) -> None:
        assert jira_to_markdown("{code:python}\nprint(1)\n{code}") == "```python\nprint(1)\n```"

    def test_noformat_block(self) -> None:
        assert jira_to_markdown("{noformat}\nraw *text*\n{noformat}") == "```\nraw *text*\n```"

    def test_lists_headings_and_quotes(self) -> None:
        text = "h2. Steps\n# first\n# second\n* bullet\n\nbq. quoted"
        assert jira_to_markdown(text) == "## Steps\n1. first\n1. second\n- bullet\n\n> quoted"

    def test_html_only_effects_become_plain_text(self) -> None:
        # Mattermost shows <font>, <u>, <sup> literally: keep the words only.
        assert jira_to_markdown("{color:red}alert{color} +under+ ^sup^ ~sub~") == "alert under sup sub"

    def test_jira_attachments_become_their_name(self) -> None:
        assert jira_to_markdown("!screen.png|thumbnail! and [^log.txt]") == "screen.png and log.txt"

    def test_plain_text_is_returned_unchanged(self) -> None:
        text = "Nothing to convert here, right; it's plain (really)."
        assert jira_to_markdown(text) == text

    def test_never_raises_and_falls_back_to_raw_text(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import bot.render.markup as markup

        class Broken:
            def transform_string(self, _text: str) -> str:
                raise RecursionError("too deep")

        monkeypatch.setattr(markup, "_GRAMMAR", Broken())
        markup.jira_to_markdown.cache_clear()
        try:
            assert markup.jira_to_markdown("*x* [a|b]") == "*x* [a|b]"
        finally:
            markup.jira_to_markdown.cache_clear()

    @pytest.mark.parametrize("text", ["", "{code}", "[", "*" * 50, "{{}}", "h1.", "|", "\n\n\n", "\ue000"])
    def test_odd_input_does_not_raise(self, text: str) -> None:
        assert isinstance(jira_to_markdown(text), str)

    def test_fast_scan_gives_the_same_result_as_the_library_scan(self) -> None:
        # The converter only tries the grammar where an element may start; it must agree with
        # pyparsing's position-by-position scan on arbitrary mixes of markup.
        reference = build_wiki_grammar(Forward)
        fast = build_wiki_grammar()
        fragments = [
            "*", "-", "--", "---", "----", "_", "{code}", "{code:java}", "{noformat}", "{quote}", "{{",
            "}}", "[", "]", "|", "||", "!", "^", "~", "+", "??", "\\\\", "h1. ", "bq. ", "# ", "* ",
            "- ", "\n", " ", "abc", "x", "http://a.b/c", "{color:red}", "{color}", "[mailto:a@b.c]",
            "{panel:title=T}", "{panel}", "#", "\t", "@", "é", "[x|http://y.z]",
        ]  # fmt: skip
        rng = random.Random(20240611)
        for _ in range(150):
            text = "".join(rng.choice(fragments) for _ in range(rng.randint(1, 18)))
            assert fast.transform_string(text) == reference.transform_string(text), repr(text)


class TestReplaceJiraMentions:
    def test_connected_users_become_mattermost_mentions(self) -> None:
        text = "ping [~accountid:5b10a2844c20165700ede21g] and [~bob]"
        assert replace_jira_mentions(text, lookup) == "ping @jane and @bob.mm"

    def test_unconnected_user_gets_display_name_never_an_at(self) -> None:
        result = replace_jira_mentions("cc [~accountid:557058:abc]", lookup, {"557058:abc": "Ann Lee"})
        assert result == "cc Ann Lee"

    def test_unknown_user_gets_the_bare_id(self) -> None:
        assert replace_jira_mentions("cc [~carol] [~accountid:xyz-1]", lookup) == "cc carol xyz-1"
        assert "@" not in replace_jira_mentions("cc [~carol]", lookup)

    def test_aliased_form_uses_the_alias_when_not_connected(self) -> None:
        assert replace_jira_mentions("[Carol D|~accountid:c1]", lookup) == "Carol D"
        assert replace_jira_mentions("[Bobby|~bob]", lookup) == "@bob.mm"

    def test_failing_lookup_is_treated_as_not_connected(self) -> None:
        def broken(_jira_id: str) -> str | None:
            raise RuntimeError("store down")

        assert replace_jira_mentions("[~bob]", broken, {"bob": "Bob"}) == "Bob"


class TestNeutraliseMentions:
    @pytest.mark.parametrize(
        "text",
        [
            "@channel",
            "hey @ALL look",
            "@Here!",
            "x.@channel",
            "(@channel)",
            "**@channel**",
            "\\@channel",
            "_@here",
            "@@all",
            "ping @someone.",
            "&#64;channel",
            "&commat;all",
        ],
    )
    def test_no_mention_survives(self, text: str) -> None:
        # Markdown un-escapes "\@" to "@" before Mattermost looks for mentions.
        assert mattermost_mentions(neutralise_mentions(text).replace("\\", "")) == set()

    @pytest.mark.parametrize("text", ["<!channel>", "<!here>", "<!all>", "<!channel|everyone>"])
    def test_slack_announcements_are_defused(self, text: str) -> None:
        result = neutralise_mentions(text)
        assert "<!" not in result
        assert result.startswith("@" + ZWJ)

    def test_defused_mention_reads_the_same(self) -> None:
        assert neutralise_mentions("@channel").replace(ZWJ, "") == "@channel"

    def test_allowed_mentions_survive(self) -> None:
        result = neutralise_mentions("@jane and @bob.mm, not @eve or @channel", {"jane", "bob.mm"})
        assert mattermost_mentions(result) == {"jane", "bob.mm"}

    def test_allowed_is_case_insensitive_and_ignores_trailing_punctuation(self) -> None:
        assert neutralise_mentions("thanks @Jane.", {"jane"}) == "thanks @Jane."

    def test_prefix_of_an_allowed_name_is_not_allowed(self) -> None:
        assert mattermost_mentions(neutralise_mentions("@jan", {"jane"})) == set()

    def test_email_addresses_stay_readable(self) -> None:
        text = "write to first.last@example.com or a@b.co"
        assert neutralise_mentions(text) == text

    def test_at_inside_urls_becomes_percent_encoded(self) -> None:
        result = neutralise_mentions("[post](https://medium.com/@writer/x) https://m.com/@here")
        assert result == "[post](https://medium.com/%40writer/x) https://m.com/%40here"

    def test_idempotent(self) -> None:
        once = neutralise_mentions("@channel @bob")
        assert neutralise_mentions(once) == once

    def test_text_without_mentions_is_untouched(self) -> None:
        assert neutralise_mentions("plain & simple <b>") == "plain & simple <b>"


class TestRenderJiraText:
    def test_mentions_markup_quote_and_defusing_together(self) -> None:
        body = "*Heads up* [~bob] and [~carol], @channel\nsecond line"
        result = render_jira_text(body, 3000, lookup, {"carol": "Carol"}, quote=True)
        assert result == f"> **Heads up** @bob.mm and Carol, @{ZWJ}channel\n> second line"
        assert mattermost_mentions(result) == {"bob.mm"}

    def test_markup_does_not_mangle_mattermost_usernames(self) -> None:
        # A username with underscores must not be read as wiki emphasis after substitution.
        result = render_jira_text("[~u1] and [~u2]", 100, {"u1": "a_b", "u2": "c_d"}.get)
        assert result == "@a_b and @c_d"

    def test_truncation_never_leaves_a_partial_mention_that_notifies(self) -> None:
        text = "x" * 95 + " [~bob]"
        result = render_jira_text(text, 100, lookup)
        assert len(result.replace(ZWJ, "")) == 100
        assert mattermost_mentions(result) == set()

    def test_blank_text_gives_nothing(self) -> None:
        assert render_jira_text("  \n ", 3000, lookup, quote=True) == ""

    def test_quote_lines(self) -> None:
        assert quote_lines("a\nb") == "> a\n> b"
        assert quote_lines(" \n") == ""
