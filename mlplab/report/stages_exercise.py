"""Questions 1 and 2 and the toy training of Question 3: the exercise's own checks, shown.

The measured values come from mlplab's engine (:mod:`mlplab.exercise`, :mod:`mlplab.gradcheck`);
only the expected values are the exercise's.
"""

from __future__ import annotations

import numpy as np

from mlplab.report import figures, reference
from mlplab.report.context import Context
from mlplab.report.document import Equations, Figure, Section, Table, Text
from mlplab.report.fmt import num, passed, sci
from mlplab.report.style import render_equations

#: the exercise's data term of the toy loss (the loss without the L2 penalty)
TOY_DATA_LOSS = 1.2658570521180532
GRAD_BOUND = 1e-8
DEEP_NORM_BOUND = 1e-7


def stage_q1(ctx: Context, section: Section) -> None:
    from mlplab.exercise import CORRECT_LOSS, CORRECT_PROBS, TOY_REG, toy_data, toy_model

    X, y = toy_data()
    probs = toy_model().loss(X)
    loss, _ = toy_model().loss(X, y, reg=TOY_REG)
    data_loss, _ = toy_model().loss(X, y, reg=0.0)
    diff = np.abs(probs - CORRECT_PROBS)
    total = float(diff.sum())

    section.add(Text(
        "The exercise's toy network (4 inputs, 10 hidden ReLU units, 3 classes, weights "
        "`0.1 * randn` after `np.random.seed(0)`) on its toy data (`10 * randn(5, 4)` after "
        "`np.random.seed(1)`), in float64. The forward pass returns softmax probabilities."))
    rows = []
    for i in range(len(X)):
        rows.append([str(i), ", ".join(f"{p:.8f}" for p in probs[i]),
                     ", ".join(f"{p:.8f}" for p in CORRECT_PROBS[i]), sci(float(diff[i].max()))])
    section.add(Table(["sample", "mlplab p(class 0, 1, 2)", "exercise", "max |difference|"],
                      rows, "Toy probabilities"))
    section.add(Table(
        ["quantity", "mlplab", "exercise", "|difference|", "bound", "result"],
        [["sum of |p − correct|", sci(total), "0", sci(total), "1e-7", passed(total < 1e-7)],
         [f"loss, reg {TOY_REG}", f"{loss:.11f}", f"{CORRECT_LOSS:.11f}",
          sci(abs(loss - CORRECT_LOSS)), "1e-10", passed(abs(loss - CORRECT_LOSS) < 1e-10)],
         ["data term (reg 0)", f"{data_loss:.11f}", f"{TOY_DATA_LOSS:.11f}",
          sci(abs(data_loss - TOY_DATA_LOSS)), "1e-10",
          passed(abs(data_loss - TOY_DATA_LOSS) < 1e-10)]],
        "Toy probabilities and loss against the exercise's values"))
    section.data.update(prob_abs_diff_sum=total, loss=float(loss), expected_loss=CORRECT_LOSS,
                        loss_abs_diff=abs(float(loss) - CORRECT_LOSS),
                        data_loss=float(data_loss),
                        passed=bool(total < 1e-7 and abs(loss - CORRECT_LOSS) < 1e-10))


EQUATIONS = [
    r"z_2 = X W_1 + b_1,\quad a_2 = \mathrm{relu}(z_2),\quad z_3 = a_2 W_2 + b_2,"
    r"\quad P = \mathrm{softmax}(z_3)",
    r"J = \frac{1}{N}\sum_{i=1}^{N} -\log P_{i,y_i}"
    r" + \lambda\left(\|W_1\|_F^2 + \|W_2\|_F^2\right)",
    # plain parentheses: mathtext's \left( ... \right) drew them small, the ")" against the Y
    r"\frac{\partial J}{\partial z_3} = \frac{1}{N}\,(P - Y),\quad "
    r"Y = \mathrm{onehot}(y)",
    r"\frac{\partial J}{\partial W_2} = a_2^{\top}\,\frac{\partial J}{\partial z_3} + 2\lambda W_2,"
    r"\quad \frac{\partial J}{\partial b_2} = \sum_{i}"
    r" \left(\frac{\partial J}{\partial z_3}\right)_i",
    r"\frac{\partial J}{\partial a_2} = \frac{\partial J}{\partial z_3}\,W_2^{\top},\quad "
    r"\frac{\partial J}{\partial z_2} = \frac{\partial J}{\partial a_2} \odot H(z_2)",
    r"\frac{\partial J}{\partial W_1} = X^{\top}\,\frac{\partial J}{\partial z_2} + 2\lambda W_1,"
    r"\quad \frac{\partial J}{\partial b_1} = \sum_{i}"
    r" \left(\frac{\partial J}{\partial z_2}\right)_i",
]


def stage_q2(ctx: Context, section: Section) -> None:
    from mlplab import MLP
    from mlplab.exercise import TOY_REG, toy_data, toy_model
    from mlplab.gradcheck import check_model, offset_biases

    path, rel = ctx.figure("q2-equations.png")
    render_equations(EQUATIONS, path)
    section.add(Text(
        "Row-vector convention: `X` is (N, D), `W1` (D, H), `W2` (H, K); the exercise's column "
        "form `z = W x + b` is the same map with `W` transposed. The L2 term has no 0.5 factor and "
        "biases are not penalised, hence `2 λ W`. `H` is the Heaviside step (the ReLU's "
        "derivative), `⊙` the element-wise product."))
    section.add(Equations(EQUATIONS, rel, "Forward pass, loss and the hand-derived gradients"))

    X, y = toy_data()
    model = toy_model()
    errors = check_model(model, X, y, reg=TOY_REG)
    rows = [[name, str(model.params[name].shape), sci(err), sci(GRAD_BOUND),
             passed(err < GRAD_BOUND)] for name, err in errors.items()]
    section.add(Text(
        f"Gradient check: centred differences with h = 1e-5 on the toy model with reg "
        f"{TOY_REG}; the error is the exercise's max |a − n| / max(1e-8, |a| + |n|) over the "
        "entries of each parameter."))
    section.add(Table(["parameter", "shape", "max relative error", "bound", "result"], rows,
                      "Two-layer net (the exercise's toy model)"))

    # a deeper net with the same hand-written layers: Xavier weights keep activations O(1), and
    # non-zero biases keep units off the ReLU kink (offset_biases)
    hidden = [10, 10, 10]
    deep = MLP(X.shape[1], hidden, 3, init="xavier", seed=ctx.seed, dtype=np.float64)
    offset_biases(deep, np.random.RandomState(ctx.seed))
    max_err = check_model(deep, X, y, reg=TOY_REG, metric="max")
    norm_err = check_model(deep, X, y, reg=TOY_REG, metric="norm")
    deep_rows = [[name, str(deep.params[name].shape), sci(max_err[name]), sci(norm_err[name]),
                  sci(DEEP_NORM_BOUND), passed(norm_err[name] < DEEP_NORM_BOUND)]
                 for name in max_err]
    section.add(Text(
        f"A deeper net, 4 → {' → '.join(map(str, hidden))} → 3 (ReLU, Xavier weights, seed "
        f"{ctx.seed}), on the same data. In deeper nets float64 rounding of the loss (about "
        "2e-11 absolute with h = 1e-5) lifts the element-wise maximum to 1e-8..1e-7 on entries "
        "whose gradient is nearly zero, so this net is judged on the norm-wise error "
        "‖a − n‖ / (‖a‖ + ‖n‖), where a wrong gradient gives 1e-2 or more."))
    section.add(Table(["parameter", "shape", "max relative error", "norm-wise error", "bound",
                       "result"], deep_rows, "Deeper net (3 hidden layers)"))
    section.data.update(
        two_layer=errors, deep_max=max_err, deep_norm=norm_err, deep_hidden=hidden,
        passed=bool(all(e < GRAD_BOUND for e in errors.values())
                    and all(e < DEEP_NORM_BOUND for e in norm_err.values())))


def stage_q3_toy(ctx: Context, section: Section) -> None:
    from mlplab.exercise import toy_data, toy_training

    X, y = toy_data()
    loss = toy_training(X, y)["loss_history"]  # the exercise's own draws, whatever --seed
    path, rel = ctx.figure("q3-toy-loss.png")
    figures.loss_curve(loss, path, "Toy training: loss per iteration (lr 0.1, reg 5e-6)",
                       bound=reference.TOY_FINAL_LOSS_BOUND, smooth=False)
    final = float(loss[-1])
    section.add(Text(
        f"Minibatch SGD on the toy data itself (lr 0.1, reg 5e-6, 100 iterations, batches of "
        f"200 drawn with replacement from its {len(y)} samples). The minibatches are drawn as "
        "the exercise's notebook draws them, from NumPy's global stream after "
        "`np.random.seed(0)` has drawn the toy model's weights, so `--seed` does not change "
        "this section."))
    section.add(Figure(rel, "Toy training loss per iteration (log scale) against the "
                            "exercise's bound on the final loss"))
    section.add(Table(["quantity", "mlplab", "exercise", "result"], [
        ["final training loss", num(final), f"< {reference.TOY_FINAL_LOSS_BOUND} "
         f"(about {reference.TOY_FINAL_LOSS_TYPICAL})", passed(final < 0.02)]]))
    section.data.update(final_loss=final, passed=final < reference.TOY_FINAL_LOSS_BOUND)
