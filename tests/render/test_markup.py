"""Text helpers for posts: wiki -> Markdown, Jira mentions, mention defusing, truncation."""

from __future__ import annotations

import re

import pytest

from bot.render.markup import (
    ZERO_WIDTH_JOINER,
    defuse_markdown_links,
    escape_markdown,
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

    def test_never_raises_and_falls_back_to_escaped_text(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import bot.render.markup as markup

        def broken(_text: str, _budget: int) -> str:
            raise RecursionError("too deep")

        monkeypatch.setattr(markup, "wiki_to_markdown", broken)
        markup.jira_to_markdown.cache_clear()
        try:
            assert markup.jira_to_markdown("*x* [a|b]") == "\\*x\\* \\[a\\|b\\]"
        finally:
            markup.jira_to_markdown.cache_clear()

    def test_over_budget_text_is_posted_as_escaped_plain_text(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import bot.render.markup as markup

        monkeypatch.setattr(markup, "CONVERSION_BUDGET", 50)
        markup.jira_to_markdown.cache_clear()
        try:
            text = "*bold* " * 40 + "![i](http://evil/x.png)"
            assert markup.jira_to_markdown(text) == escape_markdown(text)
            assert "**" not in markup.jira_to_markdown(text)
        finally:
            markup.jira_to_markdown.cache_clear()

    @pytest.mark.parametrize("text", ["", "{code}", "[", "*" * 50, "{{}}", "h1.", "|", "\n\n\n", "\ue000"])
    def test_odd_input_does_not_raise(self, text: str) -> None:
        assert isinstance(jira_to_markdown(text), str)

    @pytest.mark.parametrize(
        ("wiki", "markdown"),
        [
            ("*a _b* c_", "**a _b** c_"),  # the inner opener left unpaired stays text
            ("snake_case and _it_", "snake_case and _it_"),
            ("-gone- well-known a - b", "~~gone~~ well-known a - b"),
            ("a -- b --- c", "a \u2013 b \u2014 c"),
            ("??cite?? +u+ ^s^ ~s~ really??", "cite u s s really??"),
            ("2*3*4 and * alone", "2\\*3\\*4 and \\* alone"),
            ("line\\\\break and \\*star\\*", "line\nbreak and \\*star\\*"),
            ("see http://a.b/*x*_y_ ok", "see http://a.b/*x*_y_ ok"),
            (
                "[mail|mailto:a@b.co] [mailto:a@b.co] [www.x.org]",
                "[mail](mailto:a@b.co) <a@b.co> <https://www.x.org>",
            ),
            ("[a b|http://x/a b(1)]", "[a b](http://x/a%20b%281%29)"),
            ("[ABC-12] [see|ABC-12]", "[ABC-12] see"),
            ("{{a `b`}} {{`}}", "`` a `b` `` `` ` ``"),
            ("h3. *Title*", "### **Title**"),
            ("  * a\n** b\n*# c\n# d", "- a\n  - b\n  1. c\n1. d"),
            ("** not a list", "\\*\\* not a list"),
            ("bq. one\nbq. two\nafter", "> one\n> two\n\nafter"),
            ("text\n----\nmore", "text\n\n----\nmore"),
            ("{quote}\nsaid *this*\n{quote}", "> said **this**"),
            ("{panel:title=Note|borderStyle=dashed}\nbody\n{panel}", "> **Note**\n> body"),
            ("{code}\nfoo\n```\n{code}", "````\nfoo\n```\n````"),
            ("{code:title=A.java|borderStyle=solid}\nx\n{code}", "```\nx\n```"),
            ("before {noformat}*x*{noformat} after", "before \n\n```\n*x*\n```\n\n after"),
            ("{quote} never closed *b*", "{quote} never closed **b**"),
            (
                "||h1||h2||\n|a|[b|http://x]|\n|c|{{p|q}}|",
                "| h1 | h2 |\n|---|---|\n| a | [b](http://x) |\n| c | `p\\|q` |",
            ),
            ("Wow! great! (!important!)", "Wow! great! (!important!)"),
        ],
    )
    def test_conversions(self, wiki: str, markdown: str) -> None:
        assert jira_to_markdown(wiki) == markdown


class TestLinkSafety:
    @pytest.mark.parametrize(
        "target",
        ["javascript:alert(1)", "JavaScript:x", "data:text/html,x", "vbscript:x", "file:///etc/passwd", "#a"],
    )
    def test_jira_links_keep_only_safe_targets(self, target: str) -> None:
        result = jira_to_markdown(f"[click|{target}]")
        assert result == "click"
        assert "](" not in result

    def test_images_become_links(self) -> None:
        assert jira_to_markdown("!http://evil/x.png!") == "[x.png](http://evil/x.png)"
        assert jira_to_markdown("!https://e.io/a/b.gif|width=300!") == "[b.gif](https://e.io/a/b.gif)"

    def test_non_http_images_become_text(self) -> None:
        assert jira_to_markdown("!javascript:alert(1).png!") == "javascript:alert(1).png"

    @pytest.mark.parametrize(
        "text",
        [
            "[x](javascript:alert(1))",
            "![i](http://evil/x.png)",
            "!![x|http://a.b/c]",
            "{{![i](http://evil/x.png)}}",
            "[x]( <javascript:alert(1)>)",
            "<javascript://%0aalert(1)>",
            "[r]: javascript:alert(1)\n[x][r]",
        ],
    )
    def test_literal_markdown_gives_no_image_nor_bad_link(self, text: str) -> None:
        result = render_jira_text(text, 3000, lookup)
        assert "![" not in result
        assert not re.search(r"\]\(\s*<?(?!https?://|mailto:)", result)
        assert not re.search(r"<(?!https?:|mailto:)[a-z]+:", result, re.I)
        assert "]:" not in result

    def test_defuse_keeps_good_links(self) -> None:
        text = "[a](https://x.io) [m](mailto:a@b.c) <http://y.z>"
        assert defuse_markdown_links(text) == text


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
        "text", ["@bob.mm@all", "@bob.mm@bob.mm@all", "@bob.mm@bob.mm@bob.mm@channel", "@bob.mm&#64;here"]
    )
    def test_a_chain_of_allowed_mentions_leaves_no_mass_mention_at_its_end(self, text: str) -> None:
        # The joiner that ends each allowed mention makes the next "@" start a word of its own.
        assert mattermost_mentions(neutralise_mentions(text, {"bob.mm"})) == {"bob.mm"}

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
        assert neutralise_mentions("thanks @Jane.", {"jane"}) == f"thanks @Jane{ZWJ}."
        assert mattermost_mentions(neutralise_mentions("@jane_ @jane.- @jane:x", {"jane"})) == {"jane"}
        assert mattermost_mentions(neutralise_mentions("@jane@channel @jane.@all", {"jane"})) == {"jane"}

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
