// Options: defaults, parsing of every type, each error with its message, and the
// typed structs agreeing with their published schemas.
#include <gtest/gtest.h>

#include "vguide/options.hpp"
#include "vguide/options/delta.hpp"
#include "vguide/options/normal.hpp"

namespace vguide {
namespace {

constexpr OptionSpec kSpecs[] = {
    {"num_flows", "int", "4", "number of layers", ">=1"},
    {"scale", "real", "0.1", "initial scale", ">0"},
    {"affine", "bool", "true", "affine layer first", ""},
    {"estimator", "choice", "stratified", "ELBO estimator", "stratified|gumbel_softmax"},
    {"label", "string", "none", "a label", ""},
    {"hidden_dim", "int", "auto", "hidden width (auto: max(8, 2D))", ">=1"},
};
constexpr OptionSchema kSchema{kSpecs, std::size(kSpecs)};

std::string error_of(const std::vector<std::string>& assignments) {
  try {
    Options::parse("demo", kSchema, assignments);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

const std::string kValid =
    "valid options: num_flows=4 scale=0.1 affine=true estimator=stratified label=none hidden_dim=auto";

TEST(Options, DefaultsComeFromTheSchema) {
  auto o = Options::parse("demo", kSchema, {});
  EXPECT_EQ(o.get_int("num_flows"), 4);
  EXPECT_DOUBLE_EQ(o.get_real("scale"), 0.1);
  EXPECT_TRUE(o.get_bool("affine"));
  EXPECT_EQ(o.get_string("estimator"), "stratified");
  EXPECT_FALSE(o.has("hidden_dim"));
  EXPECT_EQ(o.to_string(), "num_flows=4 scale=0.1 affine=true estimator=stratified label=none hidden_dim=auto");
}

TEST(Options, ParsesEveryType) {
  auto o = Options::parse("demo", kSchema,
                          {"num_flows=7", " scale = 2.5e-1", "affine=off", "estimator=gumbel_softmax",
                           "label=hello world", "hidden_dim=32"});
  EXPECT_EQ(o.get_int("num_flows"), 7);
  EXPECT_DOUBLE_EQ(o.get_real("scale"), 0.25);
  EXPECT_FALSE(o.get_bool("affine"));
  EXPECT_EQ(o.get_string("estimator"), "gumbel_softmax");
  EXPECT_EQ(o.get_string("label"), "hello world");
  EXPECT_TRUE(o.has("hidden_dim"));
  EXPECT_EQ(o.get_int("hidden_dim"), 32);
}

TEST(Options, EachErrorNamesTheOptionAndListsTheValidOnes) {
  EXPECT_EQ(error_of({"flows=3"}), "demo: unknown option 'flows'; " + kValid);
  EXPECT_EQ(error_of({"num_flows"}), "demo: option 'num_flows' is not of the form name=value; " + kValid);
  EXPECT_EQ(error_of({"num_flows=three"}),
            "demo: bad value for option 'num_flows': 'three' is not an integer; " + kValid);
  EXPECT_EQ(error_of({"num_flows=2.5"}), "demo: bad value for option 'num_flows': '2.5' is not an integer; " + kValid);
  EXPECT_EQ(error_of({"num_flows=0"}),
            "demo: bad value for option 'num_flows': 0 is out of range (must be >=1); " + kValid);
  EXPECT_EQ(error_of({"scale=0"}), "demo: bad value for option 'scale': 0 is out of range (must be >0); " + kValid);
  EXPECT_EQ(error_of({"scale=nan"}),
            "demo: bad value for option 'scale': 'nan' is not a finite real number; " + kValid);
  EXPECT_EQ(error_of({"scale="}), "demo: bad value for option 'scale': '' is not a finite real number; " + kValid);
  EXPECT_EQ(error_of({"affine=maybe"}),
            "demo: bad value for option 'affine': 'maybe' is not a boolean (true/false); " + kValid);
  EXPECT_EQ(error_of({"estimator=soft"}),
            "demo: bad value for option 'estimator': 'soft' is not one of stratified|gumbel_softmax; " + kValid);
  EXPECT_EQ(error_of({"scale=1", "scale=2"}), "demo: option 'scale' is given twice; " + kValid);
}

TEST(Options, AFamilyWithoutOptionsSaysSo) {
  try {
    Options::parse("bare", OptionSchema{}, {"x=1"});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "bare: unknown option 'x'; this family takes no options");
  }
}

TEST(Options, MalformedSpecsArePluginBugsEvenWithAutoDefaults) {
  auto error = [](OptionSpec spec) {
    try {
      Options::parse("demo", OptionSchema{&spec, 1}, {});
    } catch (const std::logic_error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(error({"width", "int", "auto", "h", ">abc"}),
            "demo: option spec 'width': constraint '>abc' is not of the form >x, >=x, <x or <=x");
  EXPECT_EQ(error({"width", "int", "auto", "h", ">"}),
            "demo: option spec 'width': constraint '>' is not of the form >x, >=x, <x or <=x");
  EXPECT_EQ(error({"mode", "choice", "a", "h", "a||b"}), "demo: option spec 'mode': choice list 'a||b' has an empty entry");
  EXPECT_EQ(error({"scale", "float", "auto", "h", ""}), "demo: option spec 'scale': unknown option type 'float'");
}

TEST(Options, GettersRejectWrongTypesAsPluginBugs) {
  auto o = Options::parse("demo", kSchema, {});
  EXPECT_THROW(o.get_real("num_flows"), std::logic_error);
  EXPECT_THROW(o.get_int("nope"), std::logic_error);
  EXPECT_THROW(o.get_int("hidden_dim"), std::logic_error);  // left at auto
}

TEST(Options, TypedStructsAgreeWithTheirSchemas) {
  EXPECT_DOUBLE_EQ(NormalOptions::from(Options::parse("normal", NormalOptions::schema(), {})).init_scale(),
                   NormalOptions().init_scale());
  auto delta = DeltaOptions::from(Options::parse("delta", DeltaOptions::schema(), {}));
  EXPECT_DOUBLE_EQ(delta.init_value(), DeltaOptions().init_value());
  EXPECT_DOUBLE_EQ(delta.init_noise(), DeltaOptions().init_noise());
  EXPECT_DOUBLE_EQ(NormalOptions().init_scale(0.5).init_scale(), 0.5);
}

TEST(Options, TypedValidationNamesTheOption) {
  try {
    NormalOptions().init_scale(-1.0).validate();
    FAIL();
  } catch (const std::domain_error& e) {
    EXPECT_STREQ(e.what(), "normal: init_scale is -1, but must be positive!");
  }
  EXPECT_THROW(DeltaOptions().init_noise(-0.5).validate(), std::domain_error);
}

TEST(Options, DescribeListsEveryOption) {
  const std::string text = describe_options(kSchema);
  for (const auto& spec : kSchema) EXPECT_NE(text.find(spec.name), std::string::npos) << spec.name;
  EXPECT_NE(text.find("(int, >=1) number of layers"), std::string::npos) << text;
}

}  // namespace
}  // namespace vguide
