"""Data: browse the bundled sources and your own (upload or path); preview, rows, tokens, format, problems.

Uploads are stored under CPT_HOME/data only, size-limited, and only ever read as data."""
import json
from pathlib import Path

import streamlit as st

from cptcore import checks
from cptcore.config import ModelConfig, SourceConfig
from cptcore.data.sources import BUILTIN
from cptcore.runs import cpt_home

st.set_page_config(page_title="Data · CPT Studio", page_icon="🗂️", layout="wide")
HOME = cpt_home()

st.title("Data")
st.caption("Check a source before a run: how many rows and tokens, raw text or chat, and what is wrong with it.")

c1, c2 = st.columns([2, 1])
with c2:
    st.subheader("Add your own")
    upload = st.file_uploader("Upload a data file", type=[s.lstrip(".") for s in checks.DATA_SUFFIXES],
                              help=f"Stored in {HOME / 'data'} (at most {checks.MAX_UPLOAD_BYTES // 2**20} MB); "
                              "never executed.")
    if upload is not None:
        try:
            saved = checks.save_upload(HOME, upload.name, upload.getvalue())
            st.success(f"Saved as {saved.name}; use it in a run as `{saved}`.")
        except ValueError as e:
            st.error(str(e))
    typed = st.text_input("...or a local path or hub dataset id", key="data_path",
                          help=SourceConfig.model_fields["path"].description)

with c1:
    builtin = [f"builtin:{name}" for name in BUILTIN]
    mine = [str(p) for p in checks.user_files(HOME)]
    chosen = st.selectbox("Source", builtin + mine, key="data_source",
                          help="Bundled sets (builtin:*) and your files in CPT_HOME/data.")
    path = typed.strip() or chosen
    if typed.strip():
        st.caption("Showing the path you typed (clear it to browse the list).")
    f1, f2, f3 = st.columns(3)
    fmt = f1.radio("format", ["auto", "text", "chat"], horizontal=True, key="data_format",
                   help=SourceConfig.model_fields["format"].description)
    text_field = f2.text_input("text field", "text", key="data_text_field",
                               help=SourceConfig.model_fields["text_field"].description)
    model = f3.text_input("count tokens with", ModelConfig().name, key="data_model",
                          help="The tokenizer of the model you will train.")

source = SourceConfig(path=path, format=fmt, text_field=text_field or "text")


@st.cache_resource(show_spinner="Loading the tokenizer...", max_entries=4)
def tokenizer_of(name: str):
    return checks.load_tokenizer(name)


tokenizer = None
if checks.tokenizer_is_local(model) or st.session_state.get(f"data_count_{model}"):
    try:
        tokenizer = tokenizer_of(model)
    except Exception as e:  # noqa: BLE001 - shown to the user; the rest of the report still helps
        st.error(f"Cannot load the tokenizer of {model!r}: {e}")
elif st.button("Count tokens", help="Loads the tokenizer (the first time this may download the model)."):
    st.session_state[f"data_count_{model}"] = True
    st.rerun()

with st.spinner("Reading the source..."):
    report = checks.inspect_source(source, tokenizer, ModelConfig().kind)

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
