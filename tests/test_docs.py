"""Every example in README.md and docs/ works as written.

The fenced blocks of every page are read with markdown-it (the parser rich uses) and
tested by their language:

- ``yaml``: parses; a Collector configuration defines every receiver, processor and
  exporter its pipelines name (and, when a Collector is built by
  deploy/otelcol/build.sh, ``otelcol validate`` accepts it); a GitHub workflow's
  ``stream-eval`` steps parse against the CLI;
- ``toml``: loads into the settings model over its defaults, and every key in it is
  read (none ignored);
- ``json``: a trace validates against the trace schema and decodes, a feedback event
  decodes;
- ``sql``: runs on a chdb store seeded through the real pipeline;
- ``sh`` (and bare fences): ``stream-eval …`` lines parse against the click CLI
  (every command and option named exists; nothing runs), ``bash <script>`` lines name
  a script that exists and a command it has;
- ``text``: diagrams, trees and sample messages (read by the tests that need them).

A block that cannot be tested here is preceded by ``<!-- not-tested: the reason -->``.
Relative links must resolve, the CLI table of docs/operators/cli.md must list every
command and option, and the README's quick start is the two commands CI runs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import click
import fastjsonschema
import orjson
import pytest
import yaml
from helpers import nonempty
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pydantic import BaseModel, SecretStr

from stream_eval.cli import cli
from stream_eval.config import ClickHouseSettings, OtelSettings, Settings
from stream_eval.feedback_events import InvalidFeedback, decode_feedback
from stream_eval.ingest.json_traces import decode_json_value
from stream_eval.ingest.otlp import decode_otlp_proto
from stream_eval.ingest.process import process_batch
from stream_eval.records import RawMessage
from stream_eval.sink.store import Store, open_store
from stream_eval.synthetic.mix import build_mix
from stream_eval.synthetic.otlp_encode import encode_otlp
from stream_eval.testing.ingest import write_messages

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MD = MarkdownIt("commonmark").enable("table")
NOT_TESTED = re.compile(r"<!--\s*not-tested:(?P<reason>.*?)-->", re.S)
KINDS = ("yaml", "toml", "json", "sql", "sh", "text")
LANGS = {"yaml": "yaml", "yml": "yaml", "toml": "toml", "json": "json", "sql": "sql",
         "sh": "sh", "bash": "sh", "": "sh", "text": "text"}  # fmt: skip
COLLECTOR_SECTIONS = ("receivers", "processors", "exporters", "connectors")
OTELCOL = (
    Path(os.environ.get("STREAM_EVAL_OTELCOL_DIR", Path.home() / ".cache/stream-eval/otelcol"))
    / "otelcol"
)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based, of the opening fence
    kind: str
    text: str
    not_tested: str | None  # the reason, when the page marks it so

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@cache
def tokens(page: Path) -> list[Token]:
    return MD.parse(page.read_text(encoding="utf-8"))


@cache
def blocks() -> tuple[Block, ...]:
    out = []
    for page in PAGES:
        toks = tokens(page)
        for i, tok in enumerate(toks):
            if tok.type != "fence":
                continue
            lang = tok.info.strip().split()[0] if tok.info.strip() else ""
            assert lang in LANGS, f"{page}:{tok.map}: a ```{lang} block: no test reads it"
            before = toks[i - 1] if i else None
            mark = (
                NOT_TESTED.search(before.content)
                if before and before.type == "html_block"
                else None
            )
            reason = mark["reason"].strip() if mark else None
            assert tok.map is not None
            out.append(Block(page, tok.map[0] + 1, LANGS[lang], tok.content, reason))
    return tuple(out)


def blocks_of(kind: str) -> list[Block]:
    return [b for b in blocks() if b.kind == kind and b.not_tested is None]


# --------------------------------------------------------------------------- inventory


def test_every_kind_of_block_is_found() -> None:
    counts = Counter(b.kind for b in blocks() if b.not_tested is None)
    assert all(counts[k] >= 2 for k in KINDS), counts
    assert len(PAGES) >= 15  # the README and the pages under docs/


def test_blocks_marked_not_tested_give_a_reason() -> None:
    marked = [b for b in blocks() if b.not_tested is not None]
    assert marked, "no block is marked: the marker's parsing is not exercised"
    for b in nonempty(marked):
        assert len(b.not_tested or "") >= 10, f"{b}: not-tested needs a reason"
    # a marker must sit right before a block, or it marks nothing
    for page in nonempty(PAGES):
        toks = tokens(page)
        for i, tok in nonempty(enumerate(toks)):
            if tok.type == "html_block" and NOT_TESTED.search(tok.content):
                following = toks[i + 1] if i + 1 < len(toks) else None
                assert following is not None and following.type == "fence", (
                    f"{page.relative_to(ROOT)}: a not-tested marker not followed by a block"
                )


def test_the_readme_quick_start_is_what_ci_runs() -> None:
    toks = tokens(ROOT / "README.md")
    heading = next(
        i for i, t in enumerate(toks)
        if t.type == "inline" and "Quick start" in t.content and toks[i - 1].type == "heading_open"
    )  # fmt: skip
    fence = next(t for t in toks[heading:] if t.type == "fence")
    assert fence.info.strip() == ""
    assert fence.content.splitlines() == ["bash deploy/dev.sh demo", "bash deploy/dev.sh test"]
    assert "bash deploy/dev.sh test" in (ROOT / ".ci" / "run").read_text()
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


# --------------------------------------------------------------------------- links


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    toks = tokens(page)
    seen: Counter[str] = Counter()
    out = set()
    for i, t in enumerate(toks):
        if t.type == "heading_open":
            inline = toks[i + 1]
            text = "".join(
                c.content for c in inline.children or () if c.type in ("text", "code_inline")
            )
            base = slug(text)
            out.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
    return out


def links(page: Path) -> Iterator[str]:
    for t in tokens(page):
        for c in t.children or ():
            if c.type == "link_open":
                yield str(c.attrs["href"])


def test_relative_links_resolve() -> None:
    checked = 0
    for page in nonempty(PAGES):
        for href in links(page):  # may be empty: a page without links (``checked`` counts)
            if re.match(r"[a-z]+:", href):
                continue  # https:, mailto:
            path, _, anchor = href.partition("#")
            target = (page.parent / path).resolve() if path else page
            assert target.exists(), f"{page.relative_to(ROOT)}: {href} does not exist"
            assert target.is_relative_to(ROOT), f"{page.relative_to(ROOT)}: {href} leaves the repo"
            if anchor:
                assert target.suffix == ".md", f"{page.relative_to(ROOT)}: {href}"
                assert anchor in anchors(target), f"{page.relative_to(ROOT)}: no #{anchor} there"
            checked += 1
    assert checked >= 50


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    seen, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        for href in links(page):
            path = href.partition("#")[0]
            if path.endswith(".md") and not re.match(r"[a-z]+:", href):
                todo.append((page.parent / path).resolve())
    assert set(PAGES) <= seen, sorted(str(p.relative_to(ROOT)) for p in set(PAGES) - seen)


# --------------------------------------------------------------------------- YAML


def collector_components(config: dict[str, Any]) -> set[tuple[str, str]]:
    """(section, type) of every component the pipelines name; asserts each is defined."""
    pipelines = (config.get("service") or {}).get("pipelines")
    assert pipelines, "a Collector configuration without service.pipelines"
    used = set()
    for name, pipeline in pipelines.items():
        assert pipeline.get("receivers") and pipeline.get("exporters"), name
        for section in COLLECTOR_SECTIONS:
            for component in pipeline.get(section) or ():
                defined = config.get(section) or {}
                assert component in defined, (
                    f"service::pipelines::{name} references {section[:-1]} "
                    f"{component!r}, which is not configured"
                )
                used.add((section, component.split("/")[0]))
    return used


def is_collector_config(doc: Any) -> bool:
    return isinstance(doc, dict) and bool({"service", *COLLECTOR_SECTIONS} & set(doc))


def collector_configs() -> list[tuple[Block, dict[str, Any]]]:
    out = []
    for b in blocks_of("yaml"):
        doc = yaml.safe_load(b.text)
        if is_collector_config(doc):
            out.append((b, doc))
    return out


def test_yaml_blocks_parse_and_collector_pipelines_are_defined() -> None:
    configs = 0
    for b in nonempty(blocks_of("yaml")):
        doc = yaml.safe_load(b.text)
        assert isinstance(doc, dict), b
        if is_collector_config(doc):
            assert collector_components(doc), b
            configs += 1
        elif "jobs" in doc:  # a CI workflow: its stream-eval steps parse against the CLI
            steps = [s for job in doc["jobs"].values() for s in job["steps"]]
            runs = [s["run"] for s in steps if "stream-eval" in str(s.get("run", ""))]
            assert runs, b
            for run in runs:
                check_shell(" ".join(run.split()), str(b))
    assert configs >= 2


def test_the_pipeline_check_catches_an_undefined_processor() -> None:
    """The README's former Collector example: a pipeline naming processors it never defined."""
    broken = yaml.safe_load(
        "exporters: {kafka: {brokers: [k:9092]}}\n"
        "service: {pipelines: {logs: {receivers: [otlp], processors: [batch], exporters: [kafka]}}}"
    )
    with pytest.raises(AssertionError, match="references receiver 'otlp'"):
        collector_components(broken)


@pytest.mark.skipif(
    not OTELCOL.is_file(),
    reason=f"no Collector at {OTELCOL}: build it with `bash deploy/otelcol/build.sh`",
)
def test_otelcol_validates_the_collector_configs(tmp_path: Path) -> None:
    listed = yaml.safe_load(
        subprocess.run([str(OTELCOL), "components"], capture_output=True, text=True,
                       check=True, timeout=60).stdout
    )  # fmt: skip
    built = {(s, c["name"]) for s in COLLECTOR_SECTIONS for c in listed.get(s) or ()}
    validated = 0
    for i, (b, doc) in nonempty(enumerate(collector_configs())):
        if not collector_components(doc) <= built:
            continue  # e.g. tail_sampling: not in the built distribution (collector.md says why)
        path = tmp_path / f"config-{i}.yaml"
        path.write_text(b.text)
        run = subprocess.run(
            [str(OTELCOL), "validate", "--config", str(path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert run.returncode == 0, f"{b}: {run.stdout}{run.stderr}"
        validated += 1
    assert validated >= 1
    broken = tmp_path / "broken.yaml"  # the validator does refuse what the pipeline check does
    broken.write_text(
        "receivers: {otlp: {protocols: {grpc: {}}}}\n"
        "exporters: {kafka: {brokers: [k:9092]}}\n"
        "service: {pipelines: {logs: {receivers: [otlp], processors: [batch], exporters: [kafka]}}}"
    )
    run = subprocess.run([str(OTELCOL), "validate", "--config", str(broken)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode != 0 and "batch" in run.stdout + run.stderr


# --------------------------------------------------------------------------- TOML


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("STREAM_EVAL_") or key == "OPENAI_API_KEY":
            monkeypatch.delenv(key)


def load_toml(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    path = tmp_path / "snippet.toml"
    path.write_text(text)
    monkeypatch.setenv("STREAM_EVAL_CONFIG", str(path))
    return Settings()


def assert_read(given: dict[str, Any], loaded: Any, where: str) -> int:
    """Every key of ``given`` is a setting of ``loaded`` holding the given value; returns
    the number of values compared."""
    n = 0
    for key, value in given.items():
        if isinstance(loaded, BaseModel):
            assert key in type(loaded).model_fields, f"{where}.{key}: no such setting"
            got = getattr(loaded, key)
        else:
            assert isinstance(loaded, dict) and key in loaded, f"{where}.{key}: not read"
            got = loaded[key]
        if isinstance(value, dict):
            n += assert_read(value, got, f"{where}.{key}")
            continue
        if isinstance(got, SecretStr):
            got = got.get_secret_value()
        assert got == value, f"{where}.{key}: {got!r} loaded for {value!r}"
        n += 1
    return n


@pytest.mark.usefixtures("clean_env")
def test_toml_blocks_load_into_the_settings_and_every_key_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = blocks_of("toml")
    assert len(found) >= 4
    for b in nonempty(found):
        given = tomllib.loads(b.text)
        settings = load_toml(b.text, tmp_path, monkeypatch)
        assert assert_read(given, settings, str(b)) >= 1
        for route, overrides in given.get("routes", {}).items():
            assert_read(overrides.get("checks", {}), settings.checks_for(route), f"{b} {route}")


@pytest.mark.usefixtures("clean_env")
def test_a_toml_block_with_an_unknown_key_would_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the check above relies on: a misspelt key is an error, not a default."""
    with pytest.raises(ValueError, match="context_block_patern"):
        load_toml("[otel]\ncontext_block_patern = '(?P<content>.+)'\n", tmp_path, monkeypatch)


# --------------------------------------------------------------------------- context blocks

ANCHORED = r"^\[(?P<id>[^\]]+)\] (?P<content>.+)$"  # the example the docs used to give


def _otlp_call(system: str, answer: str, i: int) -> dict[str, Any]:
    return {
        "trace_id": f"{i + 1:032x}",
        "route": "support-rag",
        "timestamp": time.time(),
        "gen_ai": {
            "input": {"messages": [{"role": "system", "content": system},
                                   {"role": "user", "content": "How much storage?"}]},
            "output": {"messages": [{"role": "assistant", "content": answer}]},
        },
    }  # fmt: skip


@pytest.mark.usefixtures("clean_env")
def test_the_context_block_pattern_finds_the_documented_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pattern in the docs, on the system message shown after it, through the OTLP
    decoder: every [id] block is a document, and grounding flags a citation of none."""
    all_blocks = blocks()
    examples = [
        (b, next(n for n in all_blocks[i + 1 :] if n.page == b.page and n.kind == "text"))
        for i, b in enumerate(all_blocks)
        if b.kind == "toml" and "context_block_pattern" in b.text
    ]
    assert examples
    for b, message in nonempty(examples):
        settings = load_toml(b.text, tmp_path, monkeypatch)
        system = message.text.rstrip("\n")
        assert "\nContext: [kb-12] " in system, message  # a block after a label, and...
        assert "\n[kb-14] " in system, message  # ...one that starts its line
        want = [
            ("kb-12", "Each Pro workspace includes 50 GB per seat."),
            ("kb-13", "Storage is pooled across the workspace."),
            ("kb-14", "Extra storage is sold in blocks of 100 GB."),
        ]
        known = want[0][0]
        answers = {
            f"{want[0][1].rstrip('.')} [{known}].": [],
            f"{want[0][1].rstrip('.')} [kb-missing-99].": ["grounding"],
        }
        calls = [_otlp_call(system, a, i) for i, a in enumerate(answers)]
        raw = encode_otlp(calls, "otlp_proto", extra_spans=0)
        decoded = decode_otlp_proto(raw, time.time(), settings.otel)
        assert not decoded.dead and len(decoded.traces) == 2
        for t in nonempty(decoded.traces):
            assert [(d.id, d.content) for d in t.documents] == want, b
        batch = process_batch([RawMessage("t", 0, 0, time.time(), raw)], settings)
        assert {p.trace.output_text: p.failed_checks for p in batch.processed} == answers
        # what the docs say of an anchored pattern: only the block that starts a line
        anchored = decode_otlp_proto(raw, time.time(), OtelSettings(context_block_pattern=ANCHORED))
        assert [d.id for d in anchored.traces[0].documents] == [want[-1][0]]


# --------------------------------------------------------------------------- JSON


@cache
def trace_schema() -> Any:
    schema = orjson.loads((ROOT / "stream_eval" / "schemas" / "trace.schema.json").read_bytes())
    return fastjsonschema.compile(schema)


def test_json_blocks_are_valid_traces_or_feedback() -> None:
    kinds: Counter[str] = Counter()
    for b in nonempty(blocks_of("json")):
        value = orjson.loads(b.text)
        if isinstance(value, dict) and "kind" in value:
            decoded = decode_feedback(b.text.encode(), "doc", time.time())
            assert decoded and not [e for e in decoded if isinstance(e, InvalidFeedback)], b
            kinds["feedback"] += 1
            continue
        assert isinstance(value, dict) and "gen_ai" in value, f"{b}: neither trace nor feedback"
        trace_schema()(value)
        out = decode_json_value(value, b.text.encode(), time.time())
        assert not out.dead and len(out.traces) == 1, (b, out.dead)
        kinds["trace"] += 1
    assert kinds["trace"] >= 1 and kinds["feedback"] >= 1, kinds


# --------------------------------------------------------------------------- SQL


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A store seeded as a worker fills it: synthetic traffic through the pipeline."""
    path = tmp_path_factory.mktemp("docs") / "chdb"
    s = open_store(ClickHouseSettings(path=str(path), database="stream_eval"))
    try:
        with pytest.MonkeyPatch.context() as env:
            for key in [k for k in os.environ if k.startswith("STREAM_EVAL_")]:
                env.delenv(key)
            settings = Settings()  # the defaults
        mix = build_mix(300, batch_size=20, seed=5)
        now = time.time()
        msgs = [RawMessage("llm-traces", 0, i, now, m.value) for i, m in enumerate(mix.messages)]
        write_messages(s, msgs, settings)
        yield s
    finally:
        s.close()


def sql_examples() -> list[tuple[str, str]]:
    """(where, query): the sql blocks, and the queries of `stream-eval sql` lines."""
    out = [(str(b), b.text) for b in blocks_of("sql")]
    for b in blocks_of("sh"):
        for line in shell_lines(b.text):
            argv = stream_eval_argv(line)
            if argv and "sql" in argv:
                out.append((str(b), argv[argv.index("sql") + 1]))
    return out


@pytest.mark.usefixtures("clean_env")
def test_sql_examples_run_on_a_seeded_store(store: Store) -> None:
    examples = sql_examples()
    assert len(examples) >= 5
    answered = 0
    for where, query in examples:
        try:
            rows = store.query(query.strip().rstrip(";"))
        except Exception as exc:  # the store's error names the query's fault
            pytest.fail(f"{where}: {exc}")
        answered += bool(rows)
    assert answered >= 3  # the seeded store is not empty: the queries read real rows


# --------------------------------------------------------------------------- command lines


def shell_lines(text: str) -> list[str]:
    return [line for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def segments(line: str) -> list[list[str]]:
    """The simple commands of a line: split at | && ; and without redirections."""
    out: list[list[str]] = [[]]
    skip = False
    for w in words(line):
        if skip:
            skip = False
        elif w in ("|", "||", "&&", ";"):
            out.append([])
        elif w in (">", ">>", "<", "2>"):
            skip = True  # its file name
        else:
            out[-1].append(w)
    return [[w for w in s if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", w)] for s in out if s]


def stream_eval_argv(line: str) -> list[str] | None:
    for seg in segments(line):
        if seg and Path(seg[0]).name == "stream-eval":
            return seg[1:]
    return None


def parse_cli(argv: list[str]) -> click.Command:
    """Parse ``argv`` as click would, command by command, without running anything (and
    without type conversion, so files need not exist); returns the command reached."""
    cmd: click.Command = cli
    ctx: click.Context | None = None
    name = "stream-eval"
    while True:
        ctx = click.Context(cmd, info_name=name, parent=ctx)
        opts, rest, _ = cmd.make_parser(ctx).parse_args(args=list(argv))
        for p in cmd.params:
            value = opts.get(p.name or "")
            if isinstance(p.type, click.Choice) and isinstance(value, (str, list, tuple)):
                for v in value if isinstance(value, (list, tuple)) else [value]:
                    if isinstance(v, str):
                        p.type.convert(v, p, ctx)
            if isinstance(p, click.Argument) and p.required:
                given = isinstance(value, (str, list, tuple)) and bool(value)
                assert given, f"{name}: missing {p.human_readable_name}"
        if not isinstance(cmd, click.Group):
            assert not rest, f"{name}: unexpected arguments {rest}"
            return cmd
        assert rest, f"{name}: no command"
        sub = cmd.get_command(ctx, rest[0])
        assert sub is not None, f"{name}: no command {rest[0]!r}"
        cmd, name, argv = sub, rest[0], rest[1:]


def script_commands(script: Path) -> set[str]:
    return set(re.findall(r"^\s+([a-z][a-z|-]*)\)", script.read_text(), re.M)) - {"*"}


def check_shell(line: str, where: str) -> str:
    """Checks one command line; returns what it was: stream-eval, script or other."""
    argv = stream_eval_argv(line)
    if argv is not None:
        try:
            parse_cli(argv)
        except (click.ClickException, AssertionError) as exc:
            raise AssertionError(f"{where}: `{line}`: {exc}") from None
        return "stream-eval"
    seg = segments(line)[0]
    if seg[0] == "bash" and seg[1].endswith(".sh"):
        script = ROOT / seg[1]
        assert script.is_file(), f"{where}: {seg[1]} does not exist"
        commands = {c for group in script_commands(script) for c in group.split("|")}
        if commands and len(seg) > 2:
            assert seg[2] in commands, f"{where}: {seg[1]} has no command {seg[2]!r}"
        return "script"
    return "other"


def test_command_lines_parse_against_the_cli() -> None:
    kinds: Counter[str] = Counter()
    for b in blocks_of("sh"):
        for line in shell_lines(b.text):
            kinds[check_shell(line, str(b))] += 1
    assert kinds["stream-eval"] >= 10 and kinds["script"] >= 3, kinds


def test_the_command_line_check_catches_what_the_cli_refuses() -> None:
    for bad, match in [
        ("stream-eval worker --roles judge", "--roles"),
        ("stream-eval worker --role judges", "judges"),
        ("stream-eval lags", "lags"),
        ("stream-eval review import", "PATH"),
        ("stream-eval sql 'SELECT 1' extra", "extra"),
        ("bash deploy/dev.sh tests", "tests"),
    ]:
        with pytest.raises(AssertionError, match=match):
            check_shell(bad, "test")
    assert check_shell("X=1 stream-eval --config f.toml worker --role judge | tee log", "t")


# --------------------------------------------------------------------------- the CLI table


def cli_commands(cmd: click.Command = cli, path: tuple[str, ...] = ()) -> dict[str, click.Command]:
    if isinstance(cmd, click.Group):
        return {
            k: v for n, c in cmd.commands.items() for k, v in cli_commands(c, (*path, n)).items()
        }
    return {" ".join(path): cmd}


def cli_table() -> dict[str, str]:
    """Command path -> its row's options cell, from docs/operators/cli.md."""
    rows: dict[str, str] = {}
    cells: list[str] | None = None
    for t in tokens(ROOT / "docs" / "operators" / "cli.md"):
        if t.type == "tr_open":
            cells = []
        elif t.type == "inline" and cells is not None:
            cells.append(t.content.replace("\\|", "|"))
        elif t.type == "tr_close" and cells:
            if cells[0].startswith("`stream-eval "):
                command = cells[0].strip("`").split()[1:]
                rows[" ".join(w for w in command if not w.isupper())] = cells[1]
            cells = None
    return rows


def test_the_cli_table_lists_every_command_and_option() -> None:
    table = cli_table()
    commands = cli_commands()
    assert len(commands) >= 15
    assert set(table) == set(commands)
    for path, cmd in nonempty(commands.items()):
        cell = table[path]
        options = {o for p in cmd.params if isinstance(p, click.Option)
                   for o in (*p.opts, *p.secondary_opts)}  # fmt: skip
        assert set(re.findall(r"--[a-z][a-z-]*", cell)) == options, path
        for p in cmd.params:  # may be empty: a command without options or arguments
            if isinstance(p.type, click.Choice):
                assert "|".join(map(str, p.type.choices)) in cell, (path, p.name)
