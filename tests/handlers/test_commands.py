"""Chat commands are read from plain lines only: not from code, quotes or HTML comments."""

from __future__ import annotations

from handlers.commands import MAX_COMMANDS, Command, Invalid, Name, parse


def names(body: str) -> list[str]:
    return [
        str(found) if isinstance(found, Command) else f"invalid:{found.text}"
        for found in parse(body, max_hours=168)
    ]


def test_a_command_at_the_start_of_a_line() -> None:
    assert names("/deploy-preview") == ["/deploy-preview"]
    assert names("Looks good.\n\n/destroy-preview\n") == ["/destroy-preview"]
    # Up to three spaces, as Markdown allows before a paragraph; case does not matter.
    assert names("   /Wake-Preview") == ["/wake-preview"]


def test_mid_line_mentions_are_not_commands() -> None:
    assert names("please run /deploy-preview when ready") == []
    assert names("`/deploy-preview`") == []


def test_several_commands_in_one_comment_in_order() -> None:
    assert names("/preserve 24\nsome words\n/wake-preview\r\n/preview-help") == [
        "/preserve 24",
        "/wake-preview",
        "/preview-help",
    ]
    # An exact repeat counts once.
    assert names("/deploy-preview\n/deploy-preview") == ["/deploy-preview"]


def test_commands_in_code_blocks_quotes_and_html_comments_are_ignored() -> None:
    body = "\n".join(
        [
            "```",
            "/destroy-preview",
            "```",
            "~~~~ text",
            "/destroy-preview",
            "~~~",  # shorter than the opening fence: still inside
            "/destroy-preview",
            "~~~~",
            "    /destroy-preview",
            "\t/destroy-preview",
            "> /destroy-preview",
            "<!-- k8s-ee-pr-env",
            "/destroy-preview",
            "-->",
            "/wake-preview",
        ]
    )
    assert names(body) == ["/wake-preview"]


def test_an_unclosed_fence_runs_to_the_end() -> None:
    assert names("```bash\n/deploy-preview") == []


def test_arguments() -> None:
    [deploy] = parse("/deploy-preview ABCDEF1234567", max_hours=168)
    assert deploy == Command(Name.DEPLOY, sha="abcdef1234567")
    [preserve] = parse("/preserve 72h", max_hours=168)
    assert preserve == Command(Name.PRESERVE, hours=72)
    assert parse("/preserve", max_hours=168) == [Command(Name.PRESERVE)]


def test_malformed_and_unknown_commands_of_ours_are_invalid() -> None:
    found = parse(
        "/deploy-preview main\n/preserve 0\n/preserve 500\n/destroy-preview now\n/preview\n/deploy-previews",
        max_hours=168,
    )
    assert all(isinstance(item, Invalid) for item in found)
    problems = [item.problem for item in found if isinstance(item, Invalid)]
    assert "commit SHA" in problems[0]
    assert "1 to 168" in problems[1] and "1 to 168" in problems[2]
    assert "no argument" in problems[3]
    assert "not a command" in problems[4] and "not a command" in problems[5]


def test_other_tools_commands_are_left_alone() -> None:
    assert names("/lgtm\n/retest\n/assign @me\n/path/to/file is broken") == []


def test_a_quoted_line_cannot_break_out_of_the_answer() -> None:
    [invalid] = parse("/preview `rm -rf` " + "x" * 200, max_hours=168)
    assert isinstance(invalid, Invalid)
    assert "`" not in invalid.text and len(invalid.text) <= 80


def test_at_most_so_many_commands_per_comment() -> None:
    body = "\n".join(f"/preserve {hours}" for hours in range(1, MAX_COMMANDS + 5))
    found = parse(body, max_hours=168)
    assert len(found) == MAX_COMMANDS + 1
    assert isinstance(found[-1], Invalid) and "at most" in found[-1].problem
