# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Publishing a trained model to the Hub: fail-fast checks, the model card and its plots, a safe upload.

The recipe calls these in order:

```python
repo_id = check_push_target(args.hub_model_id, args.hub_token)  # before training: bad id / token fail now
token = args.hub_token  # None: push_folder_to_hub falls back to HF_TOKEN / `hf auth login`
remove_secrets_from_args(training_args)  # training_args.bin must never hold the token
...  # train, save_model; output = trainer.predict(eval_dataset, metric_key_prefix="eval"), save_metrics
publish(trainer, task, repo_id=repo_id, token=token, metrics=output.metrics, predictions=output,
        hyperparameters=training_hyperparameters(training_args))
```

`publish` takes the run's numbers from memory and calls `publish_model`, the one call for a model trained in plain Python:
save the model and its processors, plot the training curve and the confusion matrix, render the card
(`render_model_card`), push (`push_folder_to_hub`), and optionally push a plain-timm copy (`export_timm`).

One module per concern: `secrets` (the push target and token, checked before training; secrets kept out of files),
`card` (the model cards), `plots`, `push` (the upload), `timm_export`, `publish` (`publish_model`, `publish`).
"""

from .card import (
    DISTRIBUTION_NAME,
    MODEL_CARD_TEMPLATE,
    TIMM_MODEL_CARD_TEMPLATE,
    model_card_template_path,
    render_model_card,
    render_timm_model_card,
    write_model_card,
)
from .plots import plot_confusion_matrix, plot_training_curve
from .publish import publish, publish_model, training_hyperparameters
from .push import (
    TIMM_EXPORT_DIR,
    UPLOAD_ALLOW_PATTERNS,
    UPLOAD_IGNORE_PATTERNS,
    HubPushError,
    files_to_upload,
    push_folder_to_hub,
)
from .secrets import (
    HubAuthError,
    check_push_target,
    find_secret_in_files,
    remove_secrets_from_args,
)
from .timm_export import check_timm_exportable, export_timm

__all__ = [
    "DISTRIBUTION_NAME",
    "MODEL_CARD_TEMPLATE",
    "TIMM_EXPORT_DIR",
    "TIMM_MODEL_CARD_TEMPLATE",
    "UPLOAD_ALLOW_PATTERNS",
    "UPLOAD_IGNORE_PATTERNS",
    "HubAuthError",
    "HubPushError",
    "check_push_target",
    "check_timm_exportable",
    "export_timm",
    "files_to_upload",
    "find_secret_in_files",
    "model_card_template_path",
    "plot_confusion_matrix",
    "plot_training_curve",
    "publish",
    "publish_model",
    "push_folder_to_hub",
    "remove_secrets_from_args",
    "render_model_card",
    "render_timm_model_card",
    "training_hyperparameters",
    "write_model_card",
]
