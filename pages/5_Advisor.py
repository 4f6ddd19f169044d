"""Advisor: the seed's "choose base / choose instruct" as a questionnaire -> kind, recipe, LR, replay share, reasons."""
import streamlit as st

from cptcore.advise import OPTION_HELP, QUESTIONS, advise

st.set_page_config(page_title="Advisor · CPT Studio", layout="wide")
st.title("Model advisor")
st.caption("Answer a few questions; the recommendation cites the paper or rule behind each choice "
           "(same rules as `cpt advise`).")

answers = {}
for key, question, options in QUESTIONS:
    answers[key] = st.radio(question, options, key=f"advise_{key}", horizontal=True,
                            format_func=lambda o: f"{o} ({OPTION_HELP[o]})" if o in OPTION_HELP else o)
adv = advise(answers)
lo, hi = adv.lr_range
cols = st.columns(5)
cols[0].metric("model kind", adv.model_kind)
cols[1].metric("recipe", adv.recipe)
cols[2].metric("method", adv.method)
cols[3].metric("peak LR", f"{lo:g} – {hi:g}")
cols[4].metric("replay / instruct", f"{adv.replay_share:.0%} / {adv.instruct_share:.0%}")
st.subheader("Why")
for r in adv.reasons:
    st.markdown(f"- **{r['topic']}**: {r['text']} *({r['source']})*")
sets = " ".join(f"--set {k}={v}" for k, v in adv.overrides().items())
st.code(f"cpt train experiments/recipes/{adv.recipe}.yaml {sets}", language="bash")
