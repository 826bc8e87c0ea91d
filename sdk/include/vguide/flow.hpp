#pragma once
/// The normalizing-flow kit in one include: Transform, FlowGuide, MADE, MLP,
/// autoregressive and coupling layers, permutations, elementwise affine, the
/// rational-quadratic spline. See docs/flows.md.
///
/// Example: #include "vguide/flow.hpp"
#include "vguide/flow/flow_guide.hpp"
#include "vguide/flow/layers.hpp"
#include "vguide/flow/made.hpp"
#include "vguide/flow/mlp.hpp"
#include "vguide/flow/spline.hpp"
#include "vguide/flow/transform.hpp"
#include "vguide/flow/univariate.hpp"
