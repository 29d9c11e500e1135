"""Type stubs of the native module ``triage._triage`` (see python/src/lib.rs)."""

from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

class TriageError(ValueError):
    """A triage error; ``str(e)`` is the message the CLI prints after ``triage: error:``."""

# A numpy array, or a memmap's (path, offset, dtype string, shape).
_ArrayArg = Union[np.ndarray, Tuple[str, int, str, Tuple[int, ...]]]
_ProgressCb = Optional[Callable[[int, int], Any]]

def _run_dataset(dataset: str, args: Sequence[str], progress_cb: _ProgressCb = None) -> List[str]: ...
def _run_arrays(
    task: str,
    probs: _ArrayArg,
    labels: Optional[_ArrayArg],
    masks: Optional[_ArrayArg],
    embeddings: Optional[_ArrayArg],
    ids: Optional[Sequence[str]],
    class_names: Optional[Sequence[str]],
    ignore_index: Optional[int],
    annotations: Optional[str],
    args: Sequence[str],
    progress_cb: _ProgressCb = None,
) -> List[str]: ...
def _get_label_quality_scores(labels: np.ndarray, pred_probs: np.ndarray) -> npt.NDArray[np.float64]: ...
def _segmentation_label_quality(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    temperature: float = 0.1,
    return_pixel_scores: bool = False,
) -> Tuple[npt.NDArray[np.float64], Optional[npt.NDArray[np.float64]]]: ...
