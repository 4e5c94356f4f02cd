"""Declaration checks in kernels.spec.loss: mistakes fail at import, not at request time."""

import pytest
from pydantic import Field

from kernels.regression import mse_kernel
from kernels.spec import REGISTRY, Card, Input, Params, Properties, loss

PROPERTIES = Properties(
    robust_to_outliers=False,
    smooth_gradient=True,
    convex=True,
    differentiable=True,
    bounded_below=True,
    probabilistic_interpretation=None,
)
CARD = Card("t", "s", "f", ("u",), {"torch": "x"}, ("r",))


class SwitchParams(Params):
    log_input: bool = Field(True, description="A boolean switch.")
    eps: float = Field(1e-8, gt=0, description="Not a switch.")


@pytest.mark.parametrize("switch", ["eps", "missing"])
def test_relaxed_by_must_name_a_boolean_param(switch: str) -> None:
    inputs = (
        Input("predictions", ("N", "..."), "nonnegative", "p", differentiable=True, relaxed_by=switch),
        Input("targets", ("N", "..."), "real", "t"),
    )
    declare = loss(name="relaxed_test", task="regression", inputs=inputs, properties=PROPERTIES, card=CARD,
                   params=SwitchParams)  # fmt: skip
    with pytest.raises(ValueError, match="not a boolean param"):
        declare(lambda: mse_kernel)
    assert "relaxed_test" not in REGISTRY
