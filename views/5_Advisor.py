"""Advisor: the seed's "choose base / choose instruct" as a questionnaire -> kind, recipe, LR, replay share, reasons;
"Use these settings" opens the Launch form on them."""
from pathlib import Path

import streamlit as st

from cptcore import fmt, forms
from cptcore.advise import OPTION_HELP, QUESTIONS, advise, set_args

st.set_page_config(page_title="Advisor · CPT Studio", page_icon=":material/help:", layout="wide")
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
st.title("Model advisor")
st.caption("Answer a few questions; the recommendation cites the paper or rule behind each choice "
           "(same rules as `cpt advise`).")

answers = {}
for key, question, options in QUESTIONS:
    answers[key] = st.radio(question, options, key=f"advise_{key}", horizontal=True,
                            format_func=lambda o: f"{o} ({OPTION_HELP[o]})" if o in OPTION_HELP else o)
adv = advise(answers)
settings = adv.overrides()
lo, hi = adv.lr_range

st.subheader("Recommendation")
top = st.columns([2, 1, 1])
top[0].metric("recipe", adv.recipe)
top[1].metric("model kind", adv.model_kind)
top[2].metric("method", adv.method)
low = st.columns([2, 1, 1])
low[0].metric("peak LR", fmt.lr(settings["train.lr"]), help="Where to start: the middle of the range (geometric "
              "mean, one significant digit).")
low[0].caption(f"range {fmt.lr(lo)} .. {fmt.lr(hi)} for {adv.model_kind} + {adv.method}")
low[1].metric("replay", fmt.pct(adv.replay_share), help="Share of general text in the mix (mix.replay).")
low[2].metric("instruct", fmt.pct(adv.instruct_share), help="Share of instruction data in the mix (mix.instruct).")

launch_form = forms.advice_form(settings, adv.recipe, EXPERIMENTS)
if st.button("Use these settings", type="primary", key="advise_use", icon=":material/rocket_launch:",
             help=f"Opens Launch on the {launch_form['launch_recipe']} preset with this model kind, recipe, method, "
             "LR and mix; every other field keeps the preset's value."):
    st.session_state.update(launch_form)
    st.switch_page("views/1_Launch.py")

st.subheader("Why")
for r in adv.reasons:
    st.markdown(f"- **{r['topic']}**: {r['text']} *({r['source']})*")
st.code(f"cpt train experiments/recipes/{adv.recipe}.yaml {set_args(settings)}", language="bash", wrap_lines=True)
