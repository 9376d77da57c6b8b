"""The paper's claims that a user can re-measure, each as a set of run variants.

Each experiment flips one setting of the paper's network (or, for `towers`, watches one run) and
names the number the paper reports for it (Krizhevsky, Sutskever & Hinton 2012; /work/shared/PAPER.md
"Results and claims"). A variant is an ordinary RunConfig with a few fields overridden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["speed", "ablation", "towers"]


@dataclass(frozen=True)
class Variant:
    name: str  # run directory prefix: OUT/<name>-seed<k>
    label: str  # for plots and reports
    overrides: tuple[tuple[str, Any], ...] = ()  # ("section.field", value) applied to the base config


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    kind: Kind
    question: str  # what the experiment measures, one sentence
    paper_claim: str  # the paper's statement, with its number
    variants: tuple[Variant, ...]
    paper_choice: str  # the variant the paper uses (the "with" side of an ablation)
    # Paper's figures: ablations: error reduction in percentage points ("top1", "top5"; None where
    # the paper gives none); speed: "speedup" and "target_error"; towers: none.
    paper_numbers: dict[str, Any] = field(default_factory=dict)
    recommended_seeds: int = 3
    archs: tuple[str, ...] = ("paper",)  # torchvision's AlexNet refuses the switches flipped here

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            name="relu-vs-tanh",
            title="ReLU vs tanh: steps to a target training error",
            kind="speed",
            question="How many fewer SGD steps does the ReLU network need than the same network with tanh "
            "to bring its (smoothed) training error down to the target?",
            paper_claim="A four-layer CNN with ReLUs reached 25% training error on CIFAR-10 six times faster "
            "than the same network with tanh neurons (section 3.1, Figure 1).",
            variants=(
                Variant("relu", "ReLU (paper)", (("model.activation", "relu"),)),
                Variant("tanh", "tanh", (("model.activation", "tanh"),)),
            ),
            paper_choice="relu",
            paper_numbers={"speedup": 6.0, "target_error": 0.25, "setting": "4-layer CNN, CIFAR-10 (10 classes)"},
        ),
        Experiment(
            name="lrn",
            title="Local response normalisation: with vs without",
            kind="ablation",
            question="How much lower is the validation error with local response normalisation after conv1 and conv2?",
            paper_claim="Response normalisation reduces the top-1 and top-5 error rates by 1.4% and 1.2% (section 3.3).",
            variants=(
                Variant("lrn", "with LRN (paper)", (("model.lrn", True),)),
                Variant("no-lrn", "without LRN", (("model.lrn", False),)),
            ),
            paper_choice="lrn",
            paper_numbers={"top1": 1.4, "top5": 1.2},
        ),
        Experiment(
            name="pooling",
            title="Overlapping (3/2) vs non-overlapping (2/2) max pooling",
            kind="ablation",
            question="How much lower is the validation error with overlapping pooling (window 3, stride 2) than "
            "with non-overlapping pooling (window 2, stride 2)?",
            paper_claim="Overlapping pooling reduces the top-1 and top-5 error rates by 0.4% and 0.3% compared "
            "with the non-overlapping scheme s = 2, z = 2 (section 3.4).",
            variants=(
                Variant("overlapping", "overlapping 3/2 (paper)", (("model.pooling", "overlapping"),)),
                Variant("non-overlapping", "non-overlapping 2/2", (("model.pooling", "non-overlapping"),)),
            ),
            paper_choice="overlapping",
            paper_numbers={"top1": 0.4, "top5": 0.3},
        ),
        Experiment(
            name="augmentation",
            title="PCA colour noise: on vs off",
            kind="ablation",
            question="How much lower is the validation error with the PCA colour augmentation (sigma 0.1)?",
            paper_claim="Altering RGB intensities along their principal components reduces the top-1 error rate "
            "by over 1% (section 4.1).",
            variants=(
                Variant("pca-noise", "PCA colour noise (paper)", (("data.pca_noise", 0.1),)),
                Variant("no-pca-noise", "no colour noise", (("data.pca_noise", 0.0),)),
            ),
            paper_choice="pca-noise",
            paper_numbers={"top1": 1.0, "top5": None, "top1_qualifier": "over"},
        ),
        Experiment(
            name="towers",
            title="Colour specificity of each tower's conv1 kernels",
            kind="towers",
            question="Does one tower's conv1 become colour-specific while the other stays colour-agnostic, "
            "and by how much do they differ?",
            paper_claim="The kernels on GPU 1 are largely colour-agnostic, while the kernels on GPU 2 are largely "
            "colour-specific; this happens during every run (section 6.1, Figure 3).",
            variants=(Variant("paper", "paper network (two towers)"),),
            paper_choice="paper",
            paper_numbers={},
        ),
    )
}


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}") from None
