#pragma once
// The quivers-syntax regression of issue 4, shared by the parser and model tests.

namespace vguide::model {

inline constexpr const char* kRegression = R"(# comment
object Predictor : 1
object Response : 1

program bayesian_regression : Predictor -> Response
    sigma <- HalfCauchy(2.0)
    beta_0 <- Normal(0.0, 5.0)
    draw beta_1 ~ Normal(0.0, 2.0)
    x <- Normal(0.0, 1.0)
    let mu = beta_0 + beta_1 * x
    observe y ~ Normal(mu, sigma)
    return y

output bayesian_regression
)";

}  // namespace vguide::model
