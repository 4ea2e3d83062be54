"""The ``python -m chatbot`` commands: one argument dataclass and one function each.

Command names, options and report fields are a contract that outside scripts rely on: extend them,
never rename them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from chatbot.policy import OutOfScopeBudget
from chatbot.settings import DEFAULT_BASE, DEFAULT_MODEL_DIR, OUT_OF_SCOPE, TRAINING_DATA, VOCAB_CORPORA
from compression.compress import CompressArgs
from compression.timing import SvdTimingArgs


@dataclass
class EvaluateArgs:
    data: list[str]
    """Labelled data files (text,intent[,lang][,split])."""
    model: str = str(DEFAULT_MODEL_DIR)
    """Model folder to evaluate."""
    split: str = "test"
    """Split to score: train, dev, test or all."""
    report: str | None = None
    """Write the JSON report here."""
    batch_size: int = 32
    """Messages per forward pass."""
    latency_sample: int = 50
    """Messages timed one by one for the latency percentiles."""
    limit: int | None = None
    """Score at most this many rows (a seeded stratified sample)."""
    out_of_scope_threshold: float = 0.0
    """The policy's out-of-scope threshold (from ``tune``; 0: only the out-of-scope label decides) that
    the in-scope / out-of-scope scores and the policy's shares are counted with; accuracy and macro-F1
    stay the classifier's top-1."""
    all_out_of_scope: bool = False
    """Count every row as out of scope, whatever its label: for a corpus of requests none of our intents
    serves (e.g. MASSIVE's assistant commands), scored as out-of-scope recall per language and the
    policy's shares. Needs a model with an out_of_scope label."""
    runtime: str = "torch"
    """What scores: torch (the PyTorch reference), openvino (the int8 export that serves customers on a
    CPU, built and cached on first use), openvino-fp16, or auto (what the app would serve with:
    $CHATBOT_RUNTIME, else PyTorch on a GPU and OpenVINO on a CPU)."""

    def __post_init__(self):
        from chatbot.runtime import RUNTIMES

        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}")
        if self.split not in ("train", "dev", "test", "all"):
            raise ValueError("split must be train, dev, test or all")
        if not 0 <= self.out_of_scope_threshold <= 1:
            raise ValueError("out-of-scope threshold must be in [0, 1]")
        if self.batch_size < 1 or self.latency_sample < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError("batch size, latency sample and limit must be ≥ 1")


def run_evaluate(args: EvaluateArgs) -> dict:
    from chatbot.classifier import load_classifier
    from chatbot.data import load_dataset, stratified_sample
    from chatbot.evaluate import evaluate, format_report
    from chatbot.policy import PolicyConfig
    from chatbot.runtime import load_serving, pick_runtime

    dataset = load_dataset(args.data, min_examples=1)
    rows = dataset.examples if args.split == "all" else dataset.split(args.split)
    if not rows:
        raise ValueError(f"no rows in split {args.split!r}")
    if args.limit:
        rows = stratified_sample(rows, args.limit)
    runtime = pick_runtime(None if args.runtime == "auto" else args.runtime)  # auto: $CHATBOT_RUNTIME, as the app
    if runtime == "torch":
        classifier = load_classifier(args.model)
    else:
        classifier = load_serving(args.model, runtime)
    if args.all_out_of_scope:
        if OUT_OF_SCOPE not in classifier.labels:
            raise ValueError(f"--all-out-of-scope needs a model with an {OUT_OF_SCOPE} label; {args.model} has none")
        rows = [replace(e, intent=OUT_OF_SCOPE) for e in rows]
    report = evaluate(classifier, rows, args.latency_sample, args.batch_size,
                      PolicyConfig(out_of_scope=args.out_of_scope_threshold))
    report.update({"model": str(args.model), "data": list(args.data), "split": args.split,
                   "dropped_rows": dataset.dropped, "out_of_scope_threshold": args.out_of_scope_threshold,
                   "all_out_of_scope": args.all_out_of_scope, "runtime": runtime})
    print(format_report(report))
    if args.report:
        write_json(args.report, report)
        print(f"report written to {args.report}")
    return report


def write_json(path: str | Path, payload: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2, ensure_ascii=False))


@dataclass
class ClassifyArgs:
    text: list[str]
    """Messages to classify."""
    model: str = str(DEFAULT_MODEL_DIR)
    """Model folder."""
    k: int = 3
    """How many top intents to show."""

    def __post_init__(self):
        if self.k < 1:
            raise ValueError("k must be ≥ 1")
        if not self.text or not all(t.strip() for t in self.text):
            raise ValueError("give at least one message, none of them empty")


def run_classify(args: ClassifyArgs) -> None:
    from chatbot.classifier import load_classifier

    classifier = load_classifier(args.model)
    for text, prediction in zip(args.text, classifier.predict(args.text, k=args.k)):
        print(json.dumps({"text": text, **prediction.as_dict()}, ensure_ascii=False))


def run_train(args) -> None:
    from chatbot.folder import ModelFolder
    from chatbot.train import train

    ModelFolder.check_new(args.out, args.base, *args.teacher)
    out = train(args)
    metrics = ModelFolder.read(out).metrics
    print(f"model written to {out} (dev accuracy {metrics['dev_accuracy']:.4f}, "
          f"temperature {metrics['temperature']:.2f})", file=sys.stderr)


@dataclass
class DetectArgs:
    text: list[str] | None = None
    """Messages whose language to detect (one JSON line each)."""
    data: str | None = None
    """Score a file with text,lang columns instead."""
    split: str | None = None
    """Only rows of this split (e.g. dev for MASSIVE)."""
    report: str | None = None
    """Write the JSON report here (with --data)."""
    compare: bool = False
    """Also score raw langdetect, restricted langdetect and restricted lingua in the same run."""
    limit: int | None = None
    """Score at most this many rows (a seeded sample)."""

    def __post_init__(self):
        if not self.text and not self.data:
            raise ValueError("give messages or --data FILE")
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be ≥ 1")


def run_detect(args: DetectArgs) -> dict | None:
    from chatbot.language import LanguageDetector

    detector = LanguageDetector()
    if args.text:
        for text in args.text:
            print(json.dumps({"text": text, **detector.detect(text).as_dict()}, ensure_ascii=False))
        return None
    from chatbot.language import score_detection

    report = score_detection(detector, args.data, args.split, args.limit, args.compare)
    print(f"accuracy {report['accuracy']:.4f}  n {report['n']}")
    for lang, r in report["per_language"].items():
        print(f"  {lang}: {r['accuracy']:.4f} (n {r['n']})")
    for name, r in report.get("baselines", {}).items():
        print(f"{name}: accuracy {r['accuracy']:.4f}")
    if args.report:
        write_json(args.report, report)
    return report


@dataclass
class ChatArgs:
    model: str = str(DEFAULT_MODEL_DIR)
    """Model folder."""
    database: str | None = None
    """Database URL (default: $CHATBOT_DATABASE_URL or a SQLite file in $CHATBOT_HOME)."""
    accept_language: str | None = None
    """Browser-style language preference, e.g. fr-FR,fr;q=0.9."""


def run_chat(args: ChatArgs) -> None:
    """A terminal chat on Assistant.respond; shows language, intent and confidence per turn."""
    from chatbot.assistant import Assistant
    from chatbot.classifier import load_classifier
    from chatbot.language import parse_accept_language
    from chatbot.store import Store

    assistant = Assistant(load_classifier(args.model), Store(args.database), version=Path(args.model).name)
    print(assistant.greeting(parse_accept_language(args.accept_language) or "en"))  # as the widget greets
    print("(type /quit to leave, /new for a new conversation)")
    conversation_id = None
    while True:
        try:
            text = input("> ")
        except EOFError:
            break
        if text.strip() == "/quit":
            break
        if text.strip() == "/new":
            conversation_id = None
            continue
        turn = assistant.respond(conversation_id, text, accept_language=args.accept_language)
        conversation_id = turn.conversation_id
        print(turn.reply)
        meta = f"[{turn.lang} · {turn.action}"
        if turn.intent:
            meta += f" · {turn.intent} {turn.confidence:.2f}"
        print(meta + "]")
        for i, choice in enumerate(turn.choices, 1):
            print(f"  {i}. {choice['label']}  (type /{i})")
        if turn.choices:
            pick = input("> ").strip()
            if pick in ("/1", "/2"):
                turn = assistant.respond(conversation_id, "", choice=turn.choices[int(pick[1]) - 1]["intent"])
                print(turn.reply)
                print(f"[{turn.lang} · {turn.action} · {turn.intent}]")


@dataclass
class TuneArgs:
    data: list[str]
    """Labelled data whose dev split tunes the thresholds."""
    model: str = str(DEFAULT_MODEL_DIR)
    """Model folder."""
    target: float = 0.95
    """Share of answered turns that must be right."""
    split: str = "dev"
    """Split to tune on."""
    report: str | None = None
    """Write the JSON result here."""
    budget: OutOfScopeBudget = field(default_factory=OutOfScopeBudget)


def run_tune(args: TuneArgs) -> dict:
    """Pick the policy's answer threshold on held-out data and show coverage at candidate values;
    with out_of_scope rows, also the out-of-scope threshold that maximises in-scope accuracy +
    out-of-scope recall, or within the budget's share of the in-scope rows (answer
    thresholds are measured on the in-scope rows)."""
    import numpy as np

    from chatbot.classifier import load_classifier
    from chatbot.data import load_dataset
    from chatbot.evaluate import tune_out_of_scope
    from chatbot.policy import PolicyConfig, tune_answer_threshold
    from chatbot.settings import OUT_OF_SCOPE

    rows = load_dataset(args.data, min_examples=1).split(args.split)
    classifier = load_classifier(args.model)
    rows = [e for e in rows if e.intent in classifier.labels]
    predictions = classifier.predict([e.text for e in rows])
    scoped = OUT_OF_SCOPE in {e.intent for e in rows}
    if args.budget.chosen and not scoped:
        raise ValueError(f"--max-reject and --max-in-scope-loss tune the out-of-scope threshold: the {args.split} "
                         f"split has no {OUT_OF_SCOPE} rows to score it with")
    out_of_scope = tune_out_of_scope(predictions, [e.intent for e in rows], **asdict(args.budget)) if scoped else None
    if not any(e.intent != OUT_OF_SCOPE for e in rows):
        raise ValueError(f"the {args.split} split has no in-scope rows with an intent this model knows")
    predictions, rows = zip(*[(p, e) for p, e in zip(predictions, rows) if e.intent != OUT_OF_SCOPE])
    confidence = np.array([p.confidence for p in predictions])
    correct = np.array([p.intent == e.intent for p, e in zip(predictions, rows)])
    gap = np.array([p.top[0][1] - p.top[1][1] for p in predictions])
    default = PolicyConfig()
    table = []
    for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        answered = (confidence >= t) & (gap >= default.gap)
        table.append({"answer_threshold": t, "coverage": float(answered.mean()),
                      "precision": float(correct[answered].mean()) if answered.any() else None})
    result = {"n": len(rows), "accuracy": float(correct.mean()),
              "tuned": tune_answer_threshold(confidence, correct, args.target, floor=default.fallback),
              "below_fallback": float((confidence < default.fallback).mean()),
              "wrong_below_fallback": float((~correct & (confidence < default.fallback)).sum() / max(1, (~correct).sum())),
              "table": table, "out_of_scope": out_of_scope}
    print(json.dumps(result, indent=2))
    if args.report:
        write_json(args.report, result)
    return result


@dataclass
class CompressCommand:
    base: str = DEFAULT_BASE
    """Model to compress: smollm2-135m, gemma3-270m, a model folder or a hub id."""
    compress: CompressArgs = field(default_factory=lambda: CompressArgs(calib=list(TRAINING_DATA)))
    out: str | None = None
    """Write the compressed model folder here (factorised layers, tokenizer, compression.json)."""
    report: str | None = None
    """Write the accounting as JSON here."""


def run_compress(args: CompressCommand) -> dict:
    """Factorise a base and print the accounting; the factors are cached for models trained on it."""
    from chatbot.model import load_base
    from chatbot.settings import ROOT, compressed_cache
    from compression.compress import compress_model, format_accounting, save_compressed, store_in_cache

    model, tokenizer = load_base(args.base, num_labels=2)
    result = compress_model(model, tokenizer, args.compress, calib_root=ROOT)
    print(format_accounting(result["report"]))
    store_in_cache(model, compressed_cache(), args.base, result["recipe"])
    if args.out:
        save_compressed(model, tokenizer, args.out, args.base, result)
        print(f"compressed model written to {args.out}")
    if args.report:
        write_json(args.report, result)
    return result


@dataclass
class BenchSvdArgs:
    report: str
    """Folder for svd_timing.json and svd_timing.md."""
    timing: SvdTimingArgs = field(default_factory=SvdTimingArgs)


def run_bench_svd(args: BenchSvdArgs) -> dict:
    from chatbot import machine
    from compression.timing import markdown_table, svd_timing_report, write_report

    report = svd_timing_report(args.timing, machine.describe())
    write_report(report, args.report)
    print(markdown_table(report))
    return report


# --- staff accounts and data retention (no model is loaded) ------------------------------------
def _data(database: str | None):
    """Store, audit trail and accounts of the installation (``$CHATBOT_HOME`` / ``$CHATBOT_DATABASE_URL``)."""
    from chatbot.accounts import Accounts
    from chatbot.audit import Audit
    from chatbot.settings import database_url
    from chatbot.store import Store

    store = Store(database or database_url())
    audit = Audit(store)
    return store, audit, Accounts(store, audit)


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"[:80]
    except (KeyError, OSError):
        return "cli"


@dataclass
class UsersArgs:
    action: str
    """add, list, disable, enable, passwd, or hf-release (give the Hugging Face username NAME to the
    account --hf-id, or to the next account that signs in under it)."""
    name: str | None = None
    """The account, or the Hugging Face username for hf-release (all but list)."""
    role: str = "agent"
    """agent or admin (add)."""
    hf_id: str | None = None
    """hf-release: the Hugging Face account id to give the name to (its owner finds it on the refusal page)."""
    password_stdin: bool = False
    """Read the password from the first line of standard input instead of asking (scripts, tests)."""
    database: str | None = None
    """Database URL (default: $CHATBOT_DATABASE_URL or a SQLite file in $CHATBOT_HOME)."""

    def __post_init__(self):
        if self.action not in ("add", "list", "disable", "enable", "passwd", "hf-release"):
            raise ValueError("users: add, list, disable, enable, passwd or hf-release")
        if self.action != "list" and not self.name:
            raise ValueError(f"users {self.action} needs a NAME")
        if self.role not in ("agent", "admin"):
            raise ValueError("role must be agent or admin")
        if self.hf_id is not None:
            self.hf_id = self.hf_id.strip()
            if self.action != "hf-release" or not self.hf_id:
                raise ValueError("--hf-id gives a name to a Hugging Face account id: only with hf-release, not empty")


def _read_password(args: UsersArgs) -> str:
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("Again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def run_users(args: UsersArgs) -> list[dict] | None:
    """Staff accounts: ``users add NAME --role agent|admin``, ``list``, ``disable``/``enable NAME``, ``passwd NAME``;
    ``hf-release NAME`` for staff who sign in with Hugging Face."""
    from chatbot.views import account_state

    _, _, accounts = _data(args.database)
    if args.action == "list":
        rows = accounts.list()
        for row in rows:
            state = account_state(row)
            print(f"{row['name']:<24} {row['role']:<6} {state:<20} last sign-in {row['last_sign_in'] or 'never'}")
        return rows
    if args.action == "add":
        accounts.add(args.name, args.role, _read_password(args), actor=_actor())
        print(f"user {args.name} added ({args.role})")
    elif args.action == "passwd":
        accounts.set_password(args.name, _read_password(args), actor=_actor())
        print(f"password of {args.name} changed (and any lockout lifted)")
    elif args.action == "hf-release":
        held = accounts.hf_sessions.release(args.name, actor=_actor(), sub=args.hf_id)
        before = f"held by account id {held}" if held else "held by no account"
        after = f"now held by account id {args.hf_id}" if args.hf_id else (
            "released: the next account to sign in under it holds it" if held else "nothing changed")
        print(f"Hugging Face username {args.name}: was {before}; {after}")
    else:
        accounts.set_disabled(args.name, args.action == "disable", actor=_actor())
        print(f"user {args.name} {args.action}d")
    return None


def parse_age(value: str):
    """``90d``, ``12h``, ``30m``, ``2w`` or a number of days, as a timedelta."""
    import re
    from datetime import datetime, timedelta, timezone

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhmw]?)\s*", str(value))
    if not match:
        raise ValueError(f"{value!r} is not an age such as 90d, 12h, 30m or 2w")
    number, unit = float(match.group(1)), match.group(2) or "d"
    try:
        age = timedelta(**{{"d": "days", "h": "hours", "m": "minutes", "w": "weeks"}[unit]: number})
        datetime.now(timezone.utc) - age
    except OverflowError:
        raise ValueError(f"{value!r} is longer than any date") from None
    return age


@dataclass
class PurgeArgs:
    older_than: str | None = None
    """Delete conversations whose last message is older than this (90d, 12h, 2w; default: $CHATBOT_RETENTION_DAYS or 90 days)."""
    database: str | None = None
    """Database URL (default: $CHATBOT_DATABASE_URL or a SQLite file in $CHATBOT_HOME)."""

    def __post_init__(self):
        if self.older_than is not None:
            parse_age(self.older_than)


def run_purge(args: PurgeArgs) -> int:
    """Delete conversations past the retention period (run it daily, e.g. from cron)."""
    from chatbot.settings import retention_days

    age = parse_age(args.older_than or f"{retention_days()}d")
    store, audit, _ = _data(args.database)
    actor = _actor()
    count = store.purge(age, audit=lambda s, n: audit.record(actor, "purge", None,
                                                             f"{n} conversation(s) older than {age}", session=s))
    print(f"deleted {count} conversation(s) older than {age}")
    return count


@dataclass
class EraseArgs:
    conversation_id: str
    """The conversation to delete with all its messages (a customer's erasure request)."""
    database: str | None = None
    """Database URL (default: $CHATBOT_DATABASE_URL or a SQLite file in $CHATBOT_HOME)."""


def run_erase(args: EraseArgs) -> int:
    store, audit, _ = _data(args.database)
    actor = _actor()
    count = store.erase(args.conversation_id, audit=lambda s: audit.record(actor, "erase", args.conversation_id,
                                                                           session=s))
    print(f"conversation {args.conversation_id} erased ({count} message(s))")
    return count


@dataclass
class VocabArgs:
    base: str = DEFAULT_BASE
    """Base whose vocabulary to trim (its tokenizer must be BPE or word-level)."""
    corpus: list[str] = field(default_factory=lambda: [*TRAINING_DATA, *VOCAB_CORPORA])
    """Text files (FILE or FILE:SPLIT, relative to the repository) whose tokens are kept: our data and public training splits."""
    out: str | None = None
    """Folder to write vocab_trim.json to (default: assets/vocab/BASE)."""


def run_vocab(args: VocabArgs) -> dict:
    """Learn which tokens a trimmed vocabulary keeps from the corpus and write them (see compression.vocab)."""
    from chatbot.data import read_rows
    from chatbot.model import load_tokenizer
    from chatbot.settings import ROOT, vocab_dir
    from compression.vocab import corpus_kept_ids, corpus_recipe, save_trim

    texts = []
    for item in args.corpus:
        path, _, split = item.partition(":")
        full = Path(path) if Path(path).exists() else ROOT / path
        found = [r.get("text") for r in read_rows(full, required=("text",)) if not split or r.get("split") == split]
        if not any(isinstance(t, str) and t.strip() for t in found):
            raise ValueError(f"{item}: no texts" + (f" in split {split!r}" if split else ""))
        texts += [t for t in found if isinstance(t, str) and t.strip()]
    tokenizer = load_tokenizer(args.base)
    kept = corpus_kept_ids(tokenizer, texts)
    recipe = corpus_recipe(tokenizer, kept, list(args.corpus))
    out = Path(args.out) if args.out else vocab_dir(args.base)
    out.mkdir(parents=True, exist_ok=True)
    save_trim(out, recipe, kept)
    print(f"{len(texts):,} texts; {recipe['kept']:,} of {recipe['vocab']:,} tokens kept; written to {out}")
    return recipe


@dataclass
class MigrateArgs:
    database: str | None = None
    """Database URL (default: $CHATBOT_DATABASE_URL or a SQLite file in $CHATBOT_HOME)."""


def run_migrate(args: MigrateArgs) -> tuple[int, int]:
    """Create or upgrade the database's tables before starting app processes (each process also does it
    at start, under a database lock, so this is for deploy scripts that want it done and checked first)."""
    from chatbot.settings import database_url
    from chatbot.store import make_engine, upgrade

    engine = make_engine(args.database or database_url())
    try:
        before, after = upgrade(engine)
    finally:
        engine.dispose()
    _data(args.database)  # the accounts' and the audit trail's tables too
    print(f"database schema: version {before} → {after}" + (" (up to date)" if before == after else ""))
    return before, after
