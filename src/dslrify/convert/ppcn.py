"""Import PPCN's released teacher and student (Zheng222/PPCN ``test/ckpt_enhancement``).

Both are TensorFlow checkpoints in one variable scope (``generator_s`` for the released teacher,
``generator_little`` for the student; the training code uses ``generator_t`` / ``generator_s``, so any
single scope is accepted). Convolutions are ``W0, b0 ...``; each instance norm creates an unnamed
``shift`` then ``scale``, so even ``Variable_*`` numbers are shifts and odd ones scales, in the order the
norms are applied. Kernels are HWIO in TF and become OIHW.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from dslrify.checkpoint import save_checkpoint
from dslrify.convert.dped import state_dict_from_tf, tf_auto_name
from dslrify.convert.tf_checkpoint import read_tf_checkpoint
from dslrify.errors import ModelError
from dslrify.models.ppcn import PPCNStudent, PPCNTeacher

PPCNVariant = Literal["teacher", "student"]
PPCN_PARAMETERS: dict[PPCNVariant, int] = {"teacher": 21_843, "student": 2_715}
# Which norm (by its attribute name) each pair of unnamed variables belongs to, in creation order.
_NORMS = {"teacher": ("norm2", "norm3", "norm4", "norm5"), "student": ("norm2", "norm3")}
_CONVS = {"teacher": 8, "student": 5}


def ppcn_name_map(variant: PPCNVariant) -> dict[str, str]:
    """PPCN variable name (without scope) -> ``PPCNTeacher``/``PPCNStudent`` state-dict key."""
    names = {}
    for i in range(_CONVS[variant]):
        names[f"W{i}"] = f"conv{i}.weight"
        names[f"b{i}"] = f"conv{i}.bias"
    for k, norm in enumerate(_NORMS[variant]):
        names[tf_auto_name(2 * k)] = f"{norm}.shift"
        names[tf_auto_name(2 * k + 1)] = f"{norm}.scale"
    return names


def import_ppcn(
    prefix: str | os.PathLike,
    out_dir: str | os.PathLike,
    variant: PPCNVariant | None = None,
) -> Path:
    """Convert PPCN's ``teacher.ckpt`` or ``student.ckpt`` into a dslrify checkpoint folder ``out_dir``.

    ``variant`` None picks it from the parameter count (21,843 teacher, 2,715 student). Returns the
    folder (architecture ``"ppcn-teacher"`` or ``"ppcn-student"``). Raises ModelError otherwise.
    """
    variables = read_tf_checkpoint(prefix)
    base = Path(prefix).name.removesuffix(".index")
    count = sum(int(v.size) for v in variables.values())
    by_count = {n: v for v, n in PPCN_PARAMETERS.items()}
    if variant is None:
        if count not in by_count:
            raise ModelError(
                f"{base} holds {count:,} parameters, which is neither PPCN's teacher (21,843) "
                "nor its student (2,715)",
                "pass the teacher.ckpt or student.ckpt prefix from Zheng222/PPCN test/ckpt_enhancement",
            )
        variant = by_count[count]
    if variant not in PPCN_PARAMETERS:
        raise ModelError(f"unknown PPCN variant {variant!r}", "use 'teacher', 'student' or None (auto)")
    scopes = sorted({name.partition("/")[0] for name in variables})
    if len(scopes) != 1:
        raise ModelError(
            f"{base} holds variables in several scopes {scopes}", "expected one PPCN generator only"
        )
    model = PPCNTeacher() if variant == "teacher" else PPCNStudent()
    state = state_dict_from_tf(
        variables, scopes[0], ppcn_name_map(variant), model, PPCN_PARAMETERS[variant], base
    )
    model.load_state_dict(state, strict=True)
    training = {
        "data": "DPED (Ignatov et al. 2017), iphone subset",
        "recipe": (
            f"PPCN official release (Hui et al., PIRM 2018), {variant}, "
            f"imported from TensorFlow checkpoint {base}"
        ),
        "licence": (
            "PPCN code/models: no licence file in Zheng222/PPCN; DPED data: non-commercial research use"
        ),
        "source": f"https://github.com/Zheng222/PPCN (test/ckpt_enhancement/{base})",
    }
    return save_checkpoint(out_dir, model, f"ppcn-{variant}", {}, training)
