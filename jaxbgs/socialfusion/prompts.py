"""SocialFusion's task prompts (paper App. D, Figs. 6-10) and how a class is read from the LM.

The LLM sees `[prompt tokens, image tokens]` and answers with the next token: an option letter ('a',
'b', ..., 'aa', ..., 'ag' for HaGRIDv2's 33 gestures) or 'Yes'/'No' for LAM. A class's score is the
next-token logit of its answer's first token; scores for mAP are the softmax over the options only.

Option order is the prompts' (AffectNet, PISC: the datasets' label order; HaGRIDv2: the prompt's own
order, mapped here to the dataset's class names from the descriptions; three/three2/three3 follow
the descriptions "index, middle, ring" / "thumb, index, middle" / "index, middle, pinkie"). HaGRID's
`no_gesture` is not an option, so those images are not gesture samples (`option_index` returns -1
and `check_options` counts them). GazeFollow's prompt asks for '(X,Y)', but the answer is read
from the gaze head's heatmap, not from text.
"""

from __future__ import annotations

import string

import numpy as np

from jaxbgs.errors import InputError
from jaxbgs.socialfusion.data.samples import CLASSES

_LETTERS = list(string.ascii_lowercase) + [f"a{c}" for c in string.ascii_lowercase]

EMOTION = (
    "You will be given an image containing a person. You must identify the facial expression of this "
    "person. The following is a list of all possible expressions that you can choose from:\n{options}\n"
    "Identify the expression of the person in the image and respond directly with only the "
    "expression's lowercase label (e.g. 'a', 'c', 'h') with no additional text or reasoning."
)
GAZE = (
    "You will be given an image containing at least one person. You will also be given a bounding box "
    "specifying a certain person's head. Your task is to predict where this person is looking. You are "
    "expected to identify the exact point they are looking at. Please provide your answer as a "
    "coordinate '(X,Y)', where both X and Y are in the range [0, 1000]. For example, if the person "
    "appears to be looking at something exactly in the center of the image, the answer would be "
    "'(500,500)'. You must be as exact as possible. To repeat, please output ONLY '(X,Y)' with no other "
    "reasoning or explanation whatsoever."
)
PISC_DOMAIN = (
    "You will be given an image containing several people and two bounding boxes around two of those "
    "people. Your task is to classify the nature of the social relationship between these two people. "
    "Your choices are\n{options}\nYour response should simply be your best estimate of the two "
    "individuals' social relation as a single letter (one of 'a', 'b', or 'c') with no additional text "
    "or reasoning."
)
PISC_RELATION = (
    "You will be given an image containing several people and two bounding boxes around two of those "
    "people. Your task is to classify the specific social relationship between these two people. Your "
    "choices are\n{options}\nYour response should simply be your best estimate of the two individuals' "
    "social relation as a single letter (e.g. 'a' or 'f') with no additional text or reasoning."
)
LAM = (
    "You will receive a single image with a cropped face. You must respond 'Yes' if the face in the "
    "image is looking at the camera wearer and 'No' otherwise. There will always be a face in the image, "
    "but since it is cropped from a larger image, it may be low resolution and unclear. Simply respond "
    "according to your best estimate. The only valid responses are 'Yes' and 'No', with no additional "
    "explanation."
)
GESTURE = (
    "You will be given an image containing a person. You must identify the gesture this person is "
    "performing. The following is a list of all possible gestures that you can choose from:\n{options}\n"
    "Identify the gesture that the person is performing and respond directly with only the gesture's "
    "lowercase label (e.g. 'a', 'j', 'ag') with no additional text or reasoning."
)

# (dataset class name, option text) in the prompt's order.
GESTURE_OPTIONS = (
    ("call", "phone gesture with only the thumb and pinkie out"),
    ("like", "thumbs up gesture"),
    ("dislike", "thumbs down gesture"),
    ("fist", "a closed fist gesture"),
    ("one", "gesture with only the index finger out"),
    ("three", "gesture with only the index, middle, and ring fingers out"),
    ("three2", "gesture with only the thumb, index, and middle fingers out"),
    ("three3", "gesture with only the index, middle, and pinkie fingers out"),
    ("four", "gesture with all fingers except thumb out"),
    ("mute", "gesture with index finger over lips"),
    ("ok", "gesture with thumb and index touching and all other fingers out"),
    ("palm", "gesture with hand splayed out, exposing the palm"),
    ("peace", "gesture with only the index and middle fingers out, palm facing camera"),
    ("peace_inverted", "gesture with only the index and middle fingers out, back of hand facing camera"),
    ("rock", "gesture with only index and pinkie fingers out"),
    ("stop", "gesture with all fingers out and touching each other closely, palm facing camera"),
    ("stop_inverted",
     "gesture with all fingers out and touching each other closely, back of hand facing camera"),
    ("two_up",
     "gesture with index and middle fingers out and touching each other closely, palm facing camera"),
    ("two_up_inverted",
     "gesture with index and middle fingers out and touching each other closely, back of hand facing camera"),
    ("grabbing", "gesture with all fingers out in a claw form, as if grabbing something"),
    ("grip", "gesture with fingers arranged in a circle, as if gripping a pole"),
    ("point", "gesture pointing with the index finger at the camera"),
    ("little_finger", "gesture with only the pinkie out"),
    ("middle_finger", "gesture with only the middle finger out"),
    ("three_gun",
     "gesture with the index and middle fingers out and touching, and the thumb out perpendicular to them"),
    ("thumb_index", "gesture with only the thumb and index fingers out perpendicular to each other"),
    ("thumb_index2", "thumb index gesture with both hands at the same time"),
    ("holy", "gesture with both hands pressed together, as if praying"),
    ("timeout",
     "gesture with both hands flat touching each other perpendicularly with one touching the other's palm"),
    ("take_picture", "thumb index gesture with both hands touching each other in the form of a rectangle"),
    ("xsign", "both hands closed and arms crossed against each other"),
    ("hand_heart", "both hands coming together in the shape of a heart with all fingers forming the shape"),
    ("hand_heart2",
     "only thumb and index fingers of both hands forming the shape of a heart, with other fingers "
     "pointing up"),
)  # fmt: skip

# Per task: the class names the options stand for, in option order, and the option texts.
OPTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "gesture": GESTURE_OPTIONS,
    "emotion": tuple(
        zip(
            CLASSES["emotion"],
            ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt"),
            strict=True,
        )
    ),  # fmt: skip
    "pisc_domain": tuple(
        zip(CLASSES["pisc_domain"], ("intimate", "not intimate", "no relation"), strict=True)
    ),
    "pisc_relation": tuple((c, c) for c in CLASSES["pisc_relation"]),
    "lam": (("not looking", "No"), ("looking", "Yes")),
}
TEMPLATES = {
    "gesture": GESTURE, "emotion": EMOTION, "pisc_domain": PISC_DOMAIN, "pisc_relation": PISC_RELATION,
    "lam": LAM, "gaze": GAZE,
}  # fmt: skip


def answers(task: str) -> tuple[str, ...]:
    """The answer strings the LM is scored on, in option order."""
    if task == "gaze":
        return ()
    if task == "lam":
        return tuple(text for _, text in OPTIONS["lam"])
    return tuple(_LETTERS[: len(OPTIONS[task])])


def prompt(task: str) -> str:
    """The App. D prompt text; gesture options one per line, the others on one line, as printed."""
    if task not in TEMPLATES:
        raise InputError(f"unknown task {task!r}", fix=f"use one of {list(TEMPLATES)}")
    if task in ("gaze", "lam"):
        return TEMPLATES[task]
    sep = "\n" if task == "gesture" else " "
    opts = sep.join(f"({a}) {text}" for a, (_, text) in zip(answers(task), OPTIONS[task], strict=True))
    return TEMPLATES[task].format(options=opts)


def option_index(task: str) -> np.ndarray:
    """Dataset class index -> option index (-1 for a class that is not an option: no_gesture)."""
    names = CLASSES[task]
    where = {c: k for k, (c, _) in enumerate(OPTIONS[task])}
    return np.array([where.get(c, -1) for c in names], np.int32)


def answer_token_ids(tokenizer, task: str) -> np.ndarray:
    """The first token id of each answer (with a leading space or not, as `tokenizer` prefers a
    bare answer); distinct answers must start with distinct tokens or scores would be shared."""
    ids = []
    for a in answers(task):
        toks = tokenizer.encode(a, add_special_tokens=False)
        if not toks:
            raise InputError(f"the tokenizer encodes answer {a!r} of task {task} to nothing")
        ids.append(toks[0])
    if len(set(ids)) != len(ids):
        raise InputError(
            f"answers of task {task} share first tokens ({dict(zip(answers(task), ids, strict=True))})",
            fix="use a tokenizer with single-token option letters (Llama 3's has them)",
        )
    return np.array(ids, np.int32)


def demo_tokenizer():
    """A word-level tokenizer over the App. D prompts' words and every answer (the demo's stand-in for
    the gated Llama 3 tokenizer): built in memory from the prompt texts, so it needs no download and is
    the same on every machine. Unknown words map to `<unk>`; `<pad>` is id 0."""
    import re

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = dict.fromkeys(["<pad>", "<unk>", "<s>"])
    for task in TEMPLATES:
        words.update(dict.fromkeys(answers(task)))
        words.update(dict.fromkeys(re.findall(r"\w+|[^\w\s]+", prompt(task))))
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # the same split: \w+|[^\w\s]+
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>"
    )


def encode_prompts(tokenizer, tasks) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, mask) of shape (len(tasks), L): each task's prompt (with the tokenizer's BOS when it
    adds one) left-padded to the longest, so that every sequence ends where the image tokens begin."""
    seqs = [tokenizer.encode(prompt(t)) for t in tasks]
    n = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    tokens = np.full((len(seqs), n), pad, np.int32)
    mask = np.zeros((len(seqs), n), bool)
    for i, s in enumerate(seqs):
        tokens[i, n - len(s) :] = s
        mask[i, n - len(s) :] = True
    return tokens, mask
