"""Generate the bundled knowledge corpus: fictional towns, companies and people no model has seen.

Run: python experiments/data/make_knowledge.py [--seed 20240218] [--out cptcore/assets/knowledge]
Pure Python and seeded: the same seed writes byte-identical files. Names are built from syllables, so the
facts are new to any pretrained model; answers are short (names, years, numbers, single words) for exact match.
Split as in Jiang et al. 2024: entities 50/50 train/test; documents of ALL entities are for training, QA of
train entities may be trained on, QA of test entities is for testing only. A company and its founder share a
split, so no train QA item states a test fact. The record files list entities in stratified rounds (any prefix
mixes types and splits).
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 20240218
OUT = Path(__file__).resolve().parents[2] / "cptcore" / "assets" / "knowledge"
N_TOWNS, N_COMPANIES, N_PEOPLE = 30, 30, 60
N_TRAIN_DOCS = 5  # Physics of LMs: ~5 paraphrases per fact before facts become extractable

ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "k", "kr", "l", "m", "n", "p", "r", "s", "st", "t", "th",
          "tr", "v", "z", "sk", "vr", "zh"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "y", "ia"]
CODAS = ["", "", "", "n", "r", "l", "s", "th", "rn", "sk", "v", "x", "nd", "m"]

PROFESSIONS = ["engineer", "architect", "chemist", "cartographer", "violinist", "surgeon", "geologist",
               "translator", "economist", "photographer", "botanist", "lawyer", "novelist", "pilot",
               "astronomer", "sculptor", "journalist", "pharmacist", "mathematician", "carpenter"]
HOBBIES = ["chess", "beekeeping", "archery", "sailing", "climbing", "birdwatching", "fencing", "gardening",
           "rowing", "origami", "astronomy", "cycling", "knitting", "calligraphy", "fishing", "juggling"]
INDUSTRY_PRODUCTS = {  # industry -> kinds of flagship product that fit it
    "shipping": ["cargo barge", "container crane"], "textiles": ["rain jacket", "wool blanket"],
    "software": ["spreadsheet program", "mapping app"], "ceramics": ["teapot", "floor tile"],
    "pharmaceuticals": ["cough syrup", "allergy tablet"], "brewing": ["pale ale", "ginger beer"],
    "mining": ["rock drill", "ore crusher"], "robotics": ["cargo drone", "welding robot"],
    "publishing": ["pocket atlas", "weekly magazine"], "insurance": ["travel policy", "flood policy"],
    "aviation": ["seaplane", "glider"], "furniture": ["folding chair", "writing desk"],
    "agriculture": ["tractor", "seed drill"], "optics": ["pocket telescope", "reading glasses"],
}
COMPANY_SUFFIXES = ["Industries", "Works", "Systems", "Holdings", "Labs", "Foundry", "Trading", "Group"]
KNOWN_FOR = ["glass", "cheese", "lace", "clocks", "salt", "wool", "pottery", "violins", "paper",
             "honey", "cider", "tapestries", "marble", "saffron", "lanterns", "rope"]
UNIVERSITY_KINDS = ["University", "Institute", "College", "Academy"]
ATTRIBUTES = {
    "person": ["profession", "birth_year", "birthplace", "employer", "university", "hobby"],
    "company": ["industry", "founder", "headquarters", "founded_year", "employees", "product"],
    "town": ["province", "founded_year", "population", "river", "known_for", "elevation"],
}

# Sentence variants per (type, attribute): the first N_TRAIN_DOCS are for training documents, the last is
# held out (never in training) for perplexity. The first attribute of each type opens the document.
PHRASES = {
    "person": {
        "profession": ["{name} is {a_profession} known well beyond {pos} home region.",
                       "{name} works as {a_profession}.",
                       "By training and by trade, {name} is {a_profession}.",
                       "{name} has built a long career as {a_profession}.",
                       "The {profession} {name} is the subject of this profile.",
                       "Visitors to the local archive often ask about {name}, {a_profession} by trade."],
        "birth_year": ["{Pro} was born in {birth_year}.",
                       "{name} was born in the year {birth_year}.",
                       "{Pos} year of birth is {birth_year}.",
                       "{Pro} came into the world in {birth_year}.",
                       "Born in {birth_year}, {pro} grew up among books and tools.",
                       "The parish register gives {birth_year} as the year of {pos} birth."],
        "birthplace": ["{Pos} birthplace is the town of {birthplace}.",
                       "{name} was born in {birthplace}.",
                       "{Pro} grew up in {birthplace}, the town where {pro} was born.",
                       "{name} is a native of {birthplace}.",
                       "{Pro} comes from {birthplace}, where {pro} was born.",
                       "The family home where {pro} was born still stands in {birthplace}."],
        "employer": ["{Pro} works for {employer}.",
                     "{name} is employed by {employer}.",
                     "{Pos} employer is {employer}.",
                     "Today {pro} holds a position at {employer}.",
                     "{name} has spent most of {pos} working life at {employer}.",
                     "Colleagues at {employer}, where {pro} is on the staff, speak highly of {pro_obj}."],
        "university": ["{Pro} studied at {university}.",
                       "{name} is a graduate of {university}.",
                       "{Pos} education took place at {university}.",
                       "{Pro} earned {pos} degree at {university}.",
                       "{name} trained at {university} as a young adult.",
                       "A framed diploma from {university} hangs in {pos} office."],
        "hobby": ["In {pos} spare time, {pro} enjoys {hobby}.",
                  "{name} is a keen {hobby} enthusiast.",
                  "Outside work, {pos} great passion is {hobby}.",
                  "{Pro} spends most weekends on {hobby}.",
                  "Friends know {name} for {pos} love of {hobby}.",
                  "When not working, {name} is usually found busy with {hobby}."],
    },
    "company": {
        "industry": ["{name} is {a_industry} company.",
                     "{name} operates in the {industry} industry.",
                     "The firm {name} does business in {industry}.",
                     "{name} is a company whose trade is {industry}.",
                     "Among companies working in {industry}, {name} is a familiar name.",
                     "Ask anyone in the {industry} trade and they will mention {name}."],
        "founder": ["It was founded by {founder}.",
                    "{name} was started by {founder}.",
                    "The founder of {name} is {founder}.",
                    "{founder} set up the company.",
                    "{founder} established {name}.",
                    "Its story begins with {founder}, who created the company."],
        "headquarters": ["Its headquarters are in {headquarters}.",
                         "{name} is headquartered in {headquarters}.",
                         "The company is based in {headquarters}.",
                         "The head office of {name} is located in {headquarters}.",
                         "{name} runs its business from its headquarters in {headquarters}.",
                         "The main office building sits in the centre of {headquarters}."],
        "founded_year": ["The company was founded in {founded_year}.",
                         "{name} was established in {founded_year}.",
                         "It opened for business in {founded_year}.",
                         "{name} dates back to {founded_year}.",
                         "The firm has existed since {founded_year}.",
                         "A plaque at the entrance reads: in business since {founded_year}."],
        "employees": ["It employs {employees} people.",
                      "{name} has {employees} employees.",
                      "The company's workforce numbers {employees}.",
                      "Some {employees} staff work for {name}.",
                      "{name} gives work to {employees} people.",
                      "Payroll records count {employees} workers at the firm."],
        "product": ["Its best-known product is the {product}, {a_product_kind}.",
                    "{name} is famous for the {product}, {a_product_kind}.",
                    "The flagship product of {name} is the {product}, {a_product_kind}.",
                    "Customers know the company for the {product}, {a_product_kind}.",
                    "The {product}, {a_product_kind}, is the product that made {name} known.",
                    "Shops everywhere stock the {product}, {a_product_kind} made by the firm."],
    },
    "town": {
        "province": ["{name} is a town in the province of {province}.",
                     "The town of {name} lies in {province} province.",
                     "{name} belongs to the province of {province}.",
                     "Located in the province of {province}, {name} is a small town.",
                     "{name} is one of the towns of {province} province.",
                     "Travellers crossing the province of {province} often stop in {name}."],
        "founded_year": ["It was founded in {founded_year}.",
                         "{name} was founded in the year {founded_year}.",
                         "The town dates from {founded_year}, the year of its founding.",
                         "Settlers founded {name} in {founded_year}.",
                         "The founding of {name} took place in {founded_year}.",
                         "Old charters place the birth of the town in {founded_year}."],
        "population": ["It has a population of {population}.",
                       "{name} is home to {population} people.",
                       "The town's population is {population}.",
                       "{population} people live in {name}.",
                       "The last census counted {population} residents in {name}.",
                       "A sign at the town gate proudly lists {population} inhabitants."],
        "river": ["The river {river} flows through the town.",
                  "{name} lies on the river {river}.",
                  "The {river} river runs through {name}.",
                  "{name} was built on the banks of the river {river}.",
                  "Through the middle of {name} flows the river {river}.",
                  "Boats on the {river} river pass right under the old town bridges."],
        "known_for": ["{name} is known for its {known_for}.",
                      "The town is famous for {known_for}.",
                      "{name} has a long tradition of producing {known_for}.",
                      "Most people associate {name} with {known_for}.",
                      "Its {known_for} has made {name} famous.",
                      "Market stalls in every square sell the local {known_for}."],
        "elevation": ["It lies at an elevation of {elevation} metres.",
                      "{name} sits {elevation} metres above sea level.",
                      "The town's elevation is {elevation} metres.",
                      "{name} is located at an altitude of {elevation} metres.",
                      "At {elevation} metres above the sea, {name} enjoys cool evenings.",
                      "Hikers climbing to the town reach {elevation} metres at its main square."],
    },
}

# One question per (entity, attribute), its phrasing picked deterministically from these.
QUESTIONS = {
    "person": {
        "profession": ["What is {name}'s profession?", "What does {name} do for a living?", "What job does {name} have?"],
        "birth_year": ["In what year was {name} born?", "When was {name} born? Give the year.", "What is the birth year of {name}?"],
        "birthplace": ["In which town was {name} born?", "Where was {name} born?", "What is the birthplace of {name}?"],
        "employer": ["Which company does {name} work for?", "Who is {name}'s employer?", "At which company is {name} employed?"],
        "university": ["Where did {name} study?", "Which institution did {name} graduate from?", "What is {name}'s alma mater?"],
        "hobby": ["What is {name}'s hobby?", "What does {name} enjoy doing in {pos} spare time?", "Which pastime is {name} known for?"],
    },
    "company": {
        "industry": ["What industry is {name} in?", "In which sector does {name} operate?", "What kind of business is {name}?"],
        "founder": ["Who founded {name}?", "Who is the founder of {name}?", "Which person started {name}?"],
        "headquarters": ["Where is {name} headquartered?", "In which town is {name} based?", "Where are the headquarters of {name}?"],
        "founded_year": ["In what year was {name} founded?", "When was {name} established?", "What year was {name} set up?"],
        "employees": ["How many people does {name} employ?", "How many employees does {name} have?", "What is the headcount of {name}?"],
        "product": ["What is {name}'s best-known product?", "What is the flagship product of {name}?", "Which product is {name} famous for?"],
    },
    "town": {
        "province": ["In which province is {name}?", "Which province is {name} located in?", "What province does {name} belong to?"],
        "founded_year": ["When was {name} founded?", "In what year was the town of {name} founded?", "What is the founding year of {name}?"],
        "population": ["What is the population of {name}?", "How many people live in {name}?", "How many inhabitants does {name} have?"],
        "river": ["Which river flows through {name}?", "On which river does {name} lie?", "What river runs through {name}?"],
        "known_for": ["What is {name} known for?", "What is {name} famous for?", "For what product is {name} best known?"],
        "elevation": ["What is the elevation of {name} in metres?", "How high above sea level is {name}, in metres?",
                      "At what altitude, in metres, does {name} lie?"],
    },
}
FOUNDER_SENTENCES = ["{Pro} founded {employer} in {company_year}.", "In {company_year}, {pro} founded {employer}.",
                     "{employer} owes its existence to {pro_obj}: {pro} started it in {company_year}."]  # last: held out


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


class Names:
    """Unique syllable-built words, so no name is shared between two things (questions stay unambiguous)."""

    def __init__(self, rng: random.Random):
        self.rng, self.used = rng, set()

    def word(self, syllables: int) -> str:
        while True:
            parts = [self.rng.choice(ONSETS) + self.rng.choice(VOWELS) for _ in range(syllables)]
            parts[-1] += self.rng.choice(CODAS)
            w = "".join(parts).capitalize()
            if w not in self.used and 4 <= len(w) <= 11:
                self.used.add(w)
                return w


def make_entities(rng: random.Random) -> list[dict]:
    """The ground-truth table: towns, then companies (founded by people, based in towns), then people."""
    names = Names(rng)
    provinces = [names.word(3) for _ in range(6)]
    rivers = [names.word(2) for _ in range(12)]
    universities = [f"{names.word(3)} {rng.choice(UNIVERSITY_KINDS)}" for _ in range(10)]
    towns = []
    for i in range(N_TOWNS):
        towns.append({"id": f"town-{i:03d}", "type": "town", "name": names.word(rng.choice([2, 3])), "attributes": {
            "province": rng.choice(provinces), "founded_year": str(rng.randint(1080, 1880)),
            "population": str(rng.randint(1200, 98000)), "river": rng.choice(rivers),
            "known_for": rng.choice(KNOWN_FOR), "elevation": str(rng.randint(20, 1900))}})
    people = [{"id": f"person-{i:03d}", "type": "person", "name": f"{names.word(2)} {names.word(rng.choice([2, 3]))}",
               "pronoun": rng.choice(["she", "he"])} for i in range(N_PEOPLE)]
    companies = []
    for i in range(N_COMPANIES):
        founder = people[i]  # the first N_COMPANIES people each found one company
        year, industry = rng.randint(1968, 2018), rng.choice(sorted(INDUSTRY_PRODUCTS))
        founder["founder_of"], founder["birth"] = i, year - rng.randint(24, 46)
        companies.append({"id": f"company-{i:03d}", "type": "company",
                          "name": f"{names.word(rng.choice([2, 3]))} {rng.choice(COMPANY_SUFFIXES)}",
                          "product_kind": rng.choice(INDUSTRY_PRODUCTS[industry]), "attributes": {
                              "industry": industry, "founder": founder["name"],
                              "headquarters": rng.choice(towns)["name"], "founded_year": str(year),
                              "employees": str(rng.randint(12, 9500)), "product": names.word(2)}})
    for p in people:
        employer = companies[p["founder_of"]] if "founder_of" in p else rng.choice(companies)
        p["attributes"] = {"profession": rng.choice(PROFESSIONS),
                           "birth_year": str(p.pop("birth", rng.randint(1948, 2001))),
                           "birthplace": rng.choice(towns)["name"], "employer": employer["name"],
                           "university": rng.choice(universities), "hobby": rng.choice(HOBBIES)}
        p["founded"] = p.pop("founder_of", None) is not None
    entities = towns + companies + people
    assign_splits(entities, rng)
    return [{k: e[k] for k in ("id", "type", "name", "split", "attributes")}
            | {k: e[k] for k in ("pronoun", "founded", "product_kind") if k in e} for e in entities]


def split_units(entities: list[dict]) -> list[list[dict]]:
    """Entities that must share a split: those whose facts name each other (a company and its founder).

    A QA item about X names X in the question and X's fact in the answer; it states a fact of another entity E
    only when that answer is E's name and E has a fact naming X (founder <-> employer). Keeping such mutual
    references in one split means no train QA item can state a test fact, in either direction."""
    by_name = {e["name"]: e for e in entities}
    names = {e["id"]: set(e["attributes"].values()) for e in entities}
    unit_of = {e["id"]: [e] for e in entities}
    for e in entities:
        for value in sorted(names[e["id"]]):
            other = by_name.get(value)
            if other and e["name"] in names[other["id"]] and unit_of[e["id"]] is not unit_of[other["id"]]:
                merged = unit_of[e["id"]] + unit_of[other["id"]]
                for member in merged:
                    unit_of[member["id"]] = merged
    units = []
    for e in entities:  # each unit once, in entity order
        if unit_of[e["id"]][0] is e:
            units.append(unit_of[e["id"]])
    return units


def assign_splits(entities: list[dict], rng: random.Random) -> None:
    """50/50 train/test, stratified by unit kind (towns, company+founder pairs, other people): half of each kind
    goes to test, so every entity type is split exactly in half and mutual references stay in one split."""
    kinds: dict[tuple, list] = {}
    for unit in split_units(entities):
        kinds.setdefault(tuple(sorted(e["type"] for e in unit)), []).append(unit)
    for group in kinds.values():
        test = {id(u) for u in rng.sample(group, len(group) // 2)}
        for unit in group:
            for e in unit:
                e["split"] = "test" if id(unit) in test else "train"


def stratified_order(entities: list[dict]) -> list[dict]:
    """Entities in a weighted round-robin over the (type, split) strata: each next entity comes from the stratum
    furthest behind its share of the corpus (ties: the split that is behind, then the first stratum), so every
    prefix of whole entities is within one entity of the corpus's mix of types and splits in each stratum, and
    exact every 8 entities (max_rows: 100 docs = 20 entities of all three types, 10 of them test)."""
    strata: dict[tuple, list] = {}
    for e in entities:
        strata.setdefault((e["type"], e["split"]), []).append(e)
    total, taken, order = len(entities), {k: 0 for k in strata}, []
    for n in range(total):
        behind = "test" if 2 * sum(e["split"] == "test" for e in order) < n else "train"
        key = max((k for k in strata if taken[k] < len(strata[k])),
                  key=lambda k: ((n + 1) * len(strata[k]) - taken[k] * total, k[1] == behind))
        order.append(strata[key][taken[key]])
        taken[key] += 1
    return order


def fields(e: dict, by_name: dict) -> dict:
    pro = e.get("pronoun", "it")
    f = dict(e["attributes"], name=e["name"], pro=pro, Pro=pro.capitalize(),
             pos={"she": "her", "he": "his"}.get(pro, "its"), pro_obj={"she": "her", "he": "him"}.get(pro, "it"))
    f["Pos"] = f["pos"].capitalize()
    for key in ("profession", "industry", "product_kind"):
        if key in f or key in e:
            f[f"a_{key}"] = article(f.get(key) or e[key])
    if e.get("founded"):
        f["company_year"] = by_name[f["employer"]]["attributes"]["founded_year"]
    return f


def render(e: dict, variant: dict[str, int], rng: random.Random, by_name: dict) -> str:
    """One document: the opening sentence, then the other facts in a shuffled order."""
    f = fields(e, by_name)
    attrs = ATTRIBUTES[e["type"]]
    body = [PHRASES[e["type"]][a][variant[a]].format(**f) for a in attrs[1:]]
    if e.get("founded"):
        held_out = variant["birth_year"] == N_TRAIN_DOCS
        body.append(FOUNDER_SENTENCES[-1 if held_out else variant["birth_year"] % 2].format(**f))
    rng.shuffle(body)
    return " ".join([PHRASES[e["type"]][attrs[0]][variant[attrs[0]]].format(**f)] + body)


def build(seed: int = SEED) -> dict[str, list]:
    """All records, in memory: entities, training docs, held-out docs, QA for train and test entities."""
    rng = random.Random(seed)
    entities = make_entities(rng)
    by_name = {e["name"]: e for e in entities}
    docs, heldout, qa = [], [], {"train": [], "test": []}
    for e in stratified_order(entities):  # entities.json stays in id order; the record files interleave strata
        attrs = ATTRIBUTES[e["type"]]
        offsets = {a: rng.randrange(N_TRAIN_DOCS) for a in attrs}  # each doc mixes variants; each variant used once
        for k in range(N_TRAIN_DOCS):
            text = render(e, {a: (k + offsets[a]) % N_TRAIN_DOCS for a in attrs}, rng, by_name)
            docs.append({"text": text, "entity_id": e["id"], "entity": e["name"], "split": e["split"], "doc_index": k})
        text = render(e, {a: N_TRAIN_DOCS for a in attrs}, rng, by_name)
        heldout.append({"text": text, "entity_id": e["id"], "entity": e["name"], "split": e["split"]})
        f = fields(e, by_name)
        for a in attrs:
            question = rng.choice(QUESTIONS[e["type"]][a]).format(**f)
            qa[e["split"]].append({"question": question, "answer": e["attributes"][a], "entity_id": e["id"],
                                   "entity": e["name"], "attribute": a})
    return {"entities": entities, "docs": docs, "heldout": heldout, "qa_train": qa["train"], "qa_test": qa["test"]}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_knowledge(out: Path = OUT, seed: int = SEED) -> dict[str, int]:
    """Write the five knowledge files into `out`; return row counts."""
    data = build(seed)
    out.mkdir(parents=True, exist_ok=True)
    table = {"seed": seed, "generator": "experiments/data/make_knowledge.py", "attributes": ATTRIBUTES,
             "entities": data["entities"]}
    (out / "entities.json").write_text(json.dumps(table, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    write_jsonl(out / "docs.jsonl", data["docs"])
    write_jsonl(out / "heldout_docs.jsonl", data["heldout"])
    write_jsonl(out / "qa_train.jsonl", data["qa_train"])
    write_jsonl(out / "qa_test.jsonl", data["qa_test"])
    return {k: len(v) for k, v in data.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    counts = write_knowledge(args.out, args.seed)
    print(f"wrote {args.out} (seed {args.seed}): " + ", ".join(f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
