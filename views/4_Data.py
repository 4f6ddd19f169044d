"""Data: browse the bundled sources and your own (upload or path); preview, rows, tokens, format, problems;
what a run does with the documents (held-out split, duplicates, passes); QA generated from them, reviewed, saved.

Uploads are stored under CPT_HOME/data only, size-limited, and only ever read as data.

For tests: st.session_state[GENERATOR_KEY] may hold a function model_name -> generate_fn (prompts -> responses)
used instead of loading the generator model."""
import json
from pathlib import Path

import streamlit as st

from cptcore import synth
from cptcore.config import ModelConfig, SourceConfig
from cptcore.data import inspect
from cptcore.data.sources import BUILTIN
from cptcore.models import DEFAULT_MODEL
from cptcore.runs import cpt_home
from cptcore.tokenizer import download_tokenizer, load_text_tokenizer

GENERATOR_KEY = "data_qa_generator"  # tests: a fake generator instead of a model
RESULT_KEY = "data_qa_result"

st.set_page_config(page_title="Data · CPT Studio", page_icon=":material/dataset:", layout="wide")
HOME = cpt_home()

st.title("Data")
st.caption("Check a source before a run: how many rows and tokens, raw text or chat, and what is wrong with it.")

c1, c2 = st.columns([2, 1])
with c2:
    st.subheader("Add your own")
    upload = st.file_uploader("Upload a data file", type=[s.lstrip(".") for s in inspect.DATA_SUFFIXES],
                              help=f"Stored in {HOME / 'data'} (at most {inspect.MAX_UPLOAD_BYTES // 2**20} MB); "
                              "never executed.")
    if upload is not None:
        try:
            saved = inspect.save_upload(HOME, upload.name, upload.getvalue())
            st.success(f"Saved as {saved.name}; use it in a run as `{saved}`.")
        except ValueError as e:
            st.error(str(e))
    typed = st.text_input("...or a local path or hub dataset id", key="data_path",
                          help=SourceConfig.model_fields["path"].description)

with c1:
    builtin = [f"builtin:{name}" for name in BUILTIN]
    mine = [str(p) for p in inspect.user_files(HOME)]
    chosen = st.selectbox("Source", builtin + mine, key="data_source",
                          help="Bundled sets (builtin:*) and your files in CPT_HOME/data.")
    path = typed.strip() or chosen
    if typed.strip():
        st.caption("Showing the path you typed (clear it to browse the list).")
    f1, f2, f3, f4 = st.columns([2, 2, 3, 2])
    fmt = f1.radio("format", ["auto", "text", "chat"], horizontal=True, key="data_format",
                   help=SourceConfig.model_fields["format"].description)
    text_field = f2.text_input("text field", "text", key="data_text_field",
                               help=SourceConfig.model_fields["text_field"].description)
    model = f3.text_input("count tokens with", ModelConfig().name, key="data_model",
                          help="The tokenizer of the model you will train.")
    kind = f4.radio("as a model of kind", ["instruct", "base"], horizontal=True, key="data_kind",
                    help=ModelConfig.model_fields["kind"].description + " Chat records are laid out (and counted) "
                    "with the chat template for instruct models, as plain Question/Answer text for base models.")

source = SourceConfig(path=path, format=fmt, text_field=text_field or "text")
refused = inspect.readable_path(path, HOME) if typed.strip() else None
if refused:
    st.error(refused)
    st.stop()


tokenizer = load_text_tokenizer(ModelConfig(name=model))  # the tokenizer files only: no torch
if tokenizer is None:
    st.caption(f"Tokens are not counted: the tokenizer of {model!r} is not on disk.")
    if st.button("Download the tokenizer", help="Fetches the tokenizer files only (a few MB, no weights)."):
        if download_tokenizer(ModelConfig(name=model)) is None:
            st.error(f"Cannot download the tokenizer of {model!r} (offline, or not a hub model).")
        else:
            st.rerun()

with st.spinner("Reading the source..."):
    report = inspect.inspect_source(source, tokenizer, kind)

m1, m2, m3, m4 = st.columns(4)
m1.metric("rows", f"{report.rows:,}")
m2.metric("format", report.format or "?")
m3.metric("tokens", "—" if report.tokens is None else f"{report.tokens:,}")
m4.metric("problems", len(report.problems))
if report.problems:
    st.warning(f"{len(report.problems)} problem(s) found in {Path(path).name if not path.startswith('builtin:') else path}:")
    st.dataframe([{"problem": p} for p in report.problems], hide_index=True, width="stretch", key="problems")
else:
    st.success("No problems found.")
if report.preview:
    st.subheader("Preview")
    st.caption(f"Columns: {', '.join(report.columns)}")
    st.dataframe([{k: v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v)
                   for k, v in row.items()} for row in report.preview], hide_index=True, width="stretch")


# --- what a run does with these documents --------------------------------------------------------------
st.subheader("What a run does with these documents")
b1, b2 = st.columns(2)
budget = b1.number_input("the run's token budget", min_value=1_000, value=1_000_000, step=100_000, key="data_budget",
                         help="Training tokens of the run (Launch shows the budget of a preset).")
share = b2.number_input("domain share of the mix", min_value=0.0, max_value=1.0, value=0.85, step=0.05,
                        key="data_share", help="mix.domain: the share of training tokens taken from these documents.")
docs = inspect.document_report(source, report.tokens, int(budget), float(share))
d1, d2, d3, d4 = st.columns(4)
d1.metric("documents", f"{docs.documents:,}")
d2.metric("tokens", "—" if docs.tokens is None else f"{docs.tokens:,}")
d3.metric("held out for evaluation", "—" if docs.holdout is None else f"{docs.holdout:,}")
d4.metric("passes at this budget", "—" if docs.passes is None else f"{docs.passes:,.1f}")
if docs.holdout is None and not path.startswith("builtin:"):
    st.warning(f"Held-out split: {docs.holdout_note}")
else:
    st.caption(f"Held-out split: {docs.holdout_note}.")
if docs.passes is not None:
    st.caption(f"Passes = {int(budget):,} tokens × {float(share):.2f} ÷ {docs.tokens:,} tokens = {docs.passes:.2f}.")


def _pairs(pairs: list[tuple[int, int]]) -> str:
    shown = ", ".join(f"row {a} = row {b}" for a, b in pairs[:10])
    return shown + (f" and {len(pairs) - 10} more" if len(pairs) > 10 else "")


if docs.exact_duplicates:
    st.warning(f"{len(docs.exact_duplicates)} duplicate document(s) (the same held-out key: equal text up to case, "
               f"punctuation and spacing; trained on twice, held out together): {_pairs(docs.exact_duplicates)}.")
if docs.near_duplicates:
    st.info(f"{len(docs.near_duplicates)} near-duplicate(s) (equal once digits are also removed, e.g. one template "
            f"filled with other numbers): {_pairs(docs.near_duplicates)}.")
if not docs.exact_duplicates and not docs.near_duplicates and docs.documents:
    st.caption("No duplicate or near-duplicate documents (near: equal up to case, punctuation, spacing and digits).")
if docs.long_documents:
    rows_txt = ", ".join(map(str, docs.long_documents[:10])) + (" ..." if len(docs.long_documents) > 10 else "")
    st.info(f"{len(docs.long_documents)} very long document(s) over {inspect.LONG_DOC_CHARS:,} characters (rows "
            f"{rows_txt}): tokenized in chunks: training cuts them into data.seq_len sequences like any document, "
            f"and QA generation reads them in passages of at most {synth.MAX_PASSAGE_WORDS} words.")

# --- QA from these documents -----------------------------------------------------------------------------
st.subheader("Generate QA from these documents")
if path.startswith("builtin:"):
    st.caption("QA generation is for your own documents: the bundled sets come with their questions "
               "(builtin:knowledge_qa_train / builtin:knowledge_qa_test). Upload or type a source above.")
    st.stop()
if report.format != "text":
    st.caption("QA is generated from raw-text documents; this source is chat data.")
    st.stop()
st.caption("A local model reads each document and writes questions with their answers; pairs whose answer is not "
           "in the document are dropped. The pairs are split by document into a qa_train file (trainable with the "
           "pit, pit_plus and knowledge_instruct recipes) and a qa_test file (evaluation only).")
with st.form("qa_form"):
    q1, q2, q3 = st.columns([3, 1, 1])
    gen_model = q1.text_input("generator model", DEFAULT_MODEL, key="qa_model",
                              help="A built-in name, a local model folder or a hub id. The 135M default is small "
                              "and offline; a larger instruct model writes more usable questions.")
    per_doc = q2.number_input("questions per document", min_value=1, max_value=10, value=3, key="qa_per_doc",
                              help="Asked per document (per passage of a long one) and per kind of question "
                              "(factual, reasoning; summary always asks one).")
    test_share = q3.number_input("test share", min_value=0.05, max_value=0.5, value=synth.TEST_SHARE, step=0.05,
                                 key="qa_test_share", help="Share of the documents whose questions are only used "
                                 "for evaluation (at least one document on each side).")
    go = st.form_submit_button("Generate QA from these documents")

if go:
    from cptcore.data.sources import DataError, read_records

    try:
        rows = read_records(source)
        make = st.session_state.get(GENERATOR_KEY) or (lambda name: synth.model_generator(name, 12, bar=False))
        with st.spinner(f"Loading {gen_model}..."):
            generate_fn = make(gen_model)
        bar = st.progress(0.0, text="Generating questions...")
        result = synth.qa_from_documents(
            rows, generate_fn, gen_model, path, source.text_field, int(per_doc), test_share=float(test_share),
            progress=lambda done, total: bar.progress(done / total, text=f"Generating: passage {done} of {total}"),
            per_call=4)
        bar.progress(1.0, text="Done.")
        st.session_state[RESULT_KEY] = {"path": path, "records": result.records, "stats": result.stats,
                                        "problem": result.problem, "notes": result.notes}
    except (DataError, ValueError, OSError) as e:  # ModelError is a ValueError: a wrong model name
        st.error(f"Cannot generate QA: {e}")

found = st.session_state.get(RESULT_KEY)
if found and found["path"] == path:
    stats = found["stats"]
    if "pairs" in stats:
        grounded = (f"{100 * stats['grounded_share']:.0f}% of the {stats['candidates']} parsed pairs passed the "
                    "grounding filter" if stats["candidates"] else "the model wrote no parsable Q:/A: pair")
        line = (f"**Yield:** {stats['pairs']} pairs from {stats['documents_used']} documents "
                f"({stats['pairs_per_document']:.2f} per document); {grounded}.")
        if "train" in stats:
            line += (f" Split by document: qa_train {stats['train']['pairs']} pairs from {stats['train']['documents']}"
                     f" documents, qa_test {stats['test']['pairs']} pairs from {stats['test']['documents']}.")
        st.markdown(line)
    for note in found["notes"]:
        st.caption(note)
    low = synth.yield_note(stats) if "pairs" in stats else None
    if low:
        st.warning(low)
    if found["problem"]:
        st.error(f"Nothing to save: {found['problem']}")
    if found["records"] and not found["problem"]:
        import pandas as pd

        table = pd.DataFrame([{"keep": True, "split": r["split"], "question": r["question"], "answer": r["answer"],
                               "type": r["attribute"], "doc row": r["doc_row"], "source passage": r["evidence"],
                               "offsets": f"{r['evidence_start']}-{r['evidence_end']}", "grounding": r["grounding"]}
                              for r in found["records"]])
        edited = st.data_editor(table, key="qa_editor", hide_index=True, width="stretch",
                                disabled=[c for c in table.columns if c != "keep"],
                                column_config={"keep": st.column_config.CheckboxColumn(
                                    "keep", help="Untick pairs that are wrong or useless; they are not saved.")})
        keep = [bool(k) for k in edited["keep"]]
        s1, s2 = st.columns([3, 1])
        default = Path(path).stem if not path.startswith("builtin:") else path.split(":", 1)[1]
        name = s1.text_input("save as", default, key="qa_name",
                             help="Writes NAME.qa_train.jsonl and NAME.qa_test.jsonl in CPT_HOME/data.")
        if s2.button("Save", key="qa_save", help=f"{sum(keep)} of {len(keep)} pairs kept"):
            try:
                train, test = inspect.save_qa(HOME, name, found["records"], keep)
                st.success(f"Saved {sum(keep)} pairs: {train} and {test}.")
                st.info(f"On Launch, set data.qa to `{train}` (the pit, pit_plus and knowledge_instruct recipes train "
                        f"on it) with these documents as data.domain; the qa_test file beside it is picked up "
                        "automatically for evaluation (eval.qa_source: auto).")
            except (ValueError, OSError) as e:
                st.error(f"Not saved: {e}")
