"""The five benchmark datasets: names, classes, files and hub ids."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DATASETS", "DatasetSpec", "NEWSGROUPS", "list_datasets"]

#: The 20 Newsgroups group names, sorted (= scikit-learn's ``target_names``).
NEWSGROUPS: tuple[str, ...] = (
    "alt.atheism",
    "comp.graphics",
    "comp.os.ms-windows.misc",
    "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware",
    "comp.windows.x",
    "misc.forsale",
    "rec.autos",
    "rec.motorcycles",
    "rec.sport.baseball",
    "rec.sport.hockey",
    "sci.crypt",
    "sci.electronics",
    "sci.med",
    "sci.space",
    "soc.religion.christian",
    "talk.politics.guns",
    "talk.politics.mideast",
    "talk.politics.misc",
    "talk.religion.misc",
)


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about one benchmark dataset.

    ``local_files`` are paths relative to the data directory (the layout of
    ``../shared/data``); ``sizes`` are the (train, validation, test) sizes of the
    paper's protocol applied to those files; ``hub_sizes`` the same for the hub's copy
    where it differs (None: the same rows).
    """

    name: str
    class_names: tuple[str, ...]
    max_length: int
    hub_id: str
    hub_config: str | None
    local_files: tuple[str, ...]
    sizes: tuple[int, int, int]
    description: str
    hub_sizes: tuple[int, int, int] | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes C (labels are 0..C-1)."""
        return len(self.class_names)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="sst2",
            class_names=("negative", "positive"),
            max_length=128,
            hub_id="nyu-mll/glue",
            hub_config="sst2",
            local_files=("sst2/train.tsv", "sst2/dev.tsv"),
            sizes=(53_879, 13_470, 872),
            description=(
                "SST-2 (GLUE) binary sentiment. GLUE train divided 80/20 (stratified, "
                "split_seed) into train/validation; GLUE dev is the test set."
            ),
        ),
        DatasetSpec(
            name="sst5",
            class_names=("very negative", "negative", "neutral", "positive", "very positive"),
            max_length=128,
            hub_id="SetFit/sst5",
            hub_config=None,
            local_files=("sst5/stsa.fine.train", "sst5/stsa.fine.dev", "sst5/stsa.fine.test"),
            sizes=(8_544, 1_101, 2_210),
            description="SST-5 fine-grained sentiment; train/validation/test as released.",
        ),
        DatasetSpec(
            name="cola",
            class_names=("unacceptable", "acceptable"),
            max_length=128,
            hub_id="nyu-mll/glue",
            hub_config="cola",
            local_files=("cola/train.tsv", "cola/dev.tsv"),
            sizes=(6_840, 1_711, 1_043),
            description=(
                "CoLA (GLUE) linguistic acceptability. GLUE train divided 80/20 (stratified, "
                "split_seed) into train/validation; GLUE dev (in- and out-of-domain) is the "
                "test set."
            ),
        ),
        DatasetSpec(
            name="20newsgroups",
            class_names=NEWSGROUPS,
            max_length=256,
            hub_id="sklearn.datasets.fetch_20newsgroups",
            hub_config=None,
            local_files=("20news/20news-bydate.tar.gz",),
            sizes=(9_051, 2_263, 7_532),
            description=(
                "20 Newsgroups topic classification (bydate, headers kept as scikit-learn's "
                "default). bydate train divided 80/20 (stratified, split_seed) into "
                "train/validation; bydate test is the test set."
            ),
        ),
        DatasetSpec(
            name="toxigen",
            class_names=("neutral", "hate"),
            max_length=128,
            hub_id="skg/toxigen-data",
            hub_config="annotated",
            local_files=("toxigen/toxiGen.json",),
            sizes=(4_731, 1_183, 600),
            description=(
                "ToxiGen hate-speech detection. Local files: the 6,514-row human-annotated "
                "subset (id < 8960 train, id >= 8960 test, label hate = 1); hub: the "
                "'annotated' release with label = toxicity_ai + toxicity_human > 5.5. The "
                "train rows are divided 80/20 (stratified, split_seed). Results on the local "
                "subset are not directly comparable to the paper's ToxiGen column."
            ),
            # the 'annotated' release: train 8,960 divided 80/20, test 940
            hub_sizes=(7_168, 1_792, 940),
        ),
    )
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`adue.data.load_dataset` (besides user folders)."""
    return list(DATASETS)
