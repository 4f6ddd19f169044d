"""Data: browse the bundled sources and your own (upload or path); preview, rows, tokens, format, problems.

Uploads are stored under CPT_HOME/data only, size-limited, and only ever read as data."""
import json
from pathlib import Path

import streamlit as st

from cptcore.config import ModelConfig, SourceConfig
from cptcore.data import inspect
from cptcore.data.sources import BUILTIN
from cptcore.runs import cpt_home
from cptcore.tokenizer import download_tokenizer, load_text_tokenizer

st.set_page_config(page_title="Data · CPT Studio", page_icon="🗂️", layout="wide")
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
