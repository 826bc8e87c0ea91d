// The argument checks: each with 0, -0.0, NaN, inf and its exact message.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "test_util.hpp"
#include "vguide/check.hpp"

namespace vguide {
namespace {
using test::message_of;

TEST(Check, PositiveRejectsZeroNegativeZeroNaNAndNegative) {
  EXPECT_EQ(message_of<std::domain_error>([] { check_positive("iaf", "num_flows", 0); }),
            "iaf: num_flows is 0, but must be positive!");
  EXPECT_EQ(message_of<std::domain_error>([] { check_positive("normal", "init_scale", -0.0); }),
            "normal: init_scale is -0, but must be positive!");
  EXPECT_EQ(message_of<std::domain_error>([] { check_positive("normal", "init_scale", std::nan("")); }),
            "normal: init_scale is nan, but must be positive!");
  EXPECT_EQ(message_of<std::domain_error>([] { check_positive("normal", "init_scale", -1.5); }),
            "normal: init_scale is -1.5, but must be positive!");
  EXPECT_NO_THROW(check_positive("normal", "init_scale", 1e-300));
  EXPECT_NO_THROW(check_positive("normal", "init_scale", std::numeric_limits<double>::infinity()));
}

TEST(Check, NonnegativeAcceptsZeros) {
  EXPECT_NO_THROW(check_nonnegative("delta", "init_noise", 0.0));
  EXPECT_NO_THROW(check_nonnegative("delta", "init_noise", -0.0));
  EXPECT_EQ(message_of<std::domain_error>([] { check_nonnegative("delta", "init_noise", std::nan("")); }),
            "delta: init_noise is nan, but must be nonnegative!");
  EXPECT_EQ(message_of<std::domain_error>([] { check_nonnegative("delta", "init_noise", -1e-9); }),
            "delta: init_noise is -1e-09, but must be nonnegative!");
}

TEST(Check, FiniteRejectsNaNAndInf) {
  EXPECT_NO_THROW(check_finite("delta", "init_value", 0.0));
  EXPECT_NO_THROW(check_finite("delta", "init_value", -0.0));
  EXPECT_EQ(message_of<std::domain_error>(
                [] { check_finite("delta", "init_value", std::numeric_limits<double>::infinity()); }),
            "delta: init_value is inf, but must be finite!");
  EXPECT_EQ(message_of<std::domain_error>(
                [] { check_finite("delta", "init_value", -std::numeric_limits<double>::infinity()); }),
            "delta: init_value is -inf, but must be finite!");
  EXPECT_EQ(message_of<std::domain_error>([] { check_finite("delta", "init_value", std::nan("")); }),
            "delta: init_value is nan, but must be finite!");
}

TEST(Check, GreaterOrEqualNamesTheBound) {
  EXPECT_NO_THROW(check_greater_or_equal("iaf", "num_flows", 1, 1));
  EXPECT_EQ(message_of<std::domain_error>([] { check_greater_or_equal("iaf", "num_flows", 0, 1); }),
            "iaf: num_flows is 0, but must be at least 1!");
}

TEST(Check, SizeMatchIsAnInvalidArgument) {
  EXPECT_NO_THROW(check_size_match("mvn", "loc", 3, "latent dim", 3));
  EXPECT_EQ(message_of<std::invalid_argument>([] { check_size_match("mvn", "loc", 2, "latent dim", 3); }),
            "mvn: loc has size 2, but must match latent dim (3)!");
}

}  // namespace
}  // namespace vguide
