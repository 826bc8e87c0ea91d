// vguide_accuracy_reference: writes the accuracy suite's data, or prints its
// reference moments as CSV (for bench/accuracy/, which compares Stan's ADVI and
// vguide-host against them).
//
//   vguide_accuracy_reference data DIR SOURCE_DIR    write <name>.json and <name>.data.R
//   vguide_accuracy_reference references SOURCE_DIR  posterior,quantity,mean,sd,... on stdout
#include <cstdio>
#include <exception>
#include <string>

#include "accuracy/problems.hpp"

int main(int argc, char** argv) try {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "data" && argc == 4) {
    vguide::accuracy::write_data(argv[2], argv[3]);
    return 0;
  }
  if (command == "references" && argc == 3) {
    std::printf("posterior,quantity,mean,sd,mean_field,full_rank,method\n");
    for (const auto& name : vguide::accuracy::posterior_names()) {
      const auto post = vguide::accuracy::load_posterior(name, argv[2]);
      for (const auto& q : post.reference)
        std::printf("%s,%s,%.17g,%.17g,%d,%d,\"%s\"\n", name.c_str(), q.name.c_str(), q.mean, q.sd, q.mean_field ? 1 : 0,
                    q.full_rank ? 1 : 0, post.method.c_str());
    }
    return 0;
  }
  std::fprintf(stderr,
               "usage: vguide_accuracy_reference data DIR SOURCE_DIR | vguide_accuracy_reference references SOURCE_DIR\n");
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "vguide_accuracy_reference: %s\n", e.what());
  return 1;
}
