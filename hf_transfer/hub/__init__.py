"""Publishing a trained model to the Hub (the package is being split by concern)."""

from .publish import *  # noqa: F403
from .publish import (  # noqa: F401
    __all__,  # noqa: F401
    _backbone_hub_id,
    _confusion_matrix_figure,
    _file_contains,
    _normalized_confusion_matrix,
    check_timm_exportable,  # noqa: F401
)
