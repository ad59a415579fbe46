// Writes the seed corpus for bundle_fuzz, one input per mode (byte 0): the genuine pushes of
// revisions 1 and 2 as raw bytes (mode 0; the signing key is the fuzz target's fixed one), the
// PolicyBundle of revision 2 (1), its YAML and every policy directory of the repository (2), the
// delta 1 → 2 (3) and the key bundle (4).
//   bundle_seeds OUT_DIR [IGNORED]
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bundle_fuzz_world.hpp"

using namespace zt;
using namespace zt::cp;
using namespace zt::fuzz;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  fs::create_directories(out);
  World* w = make_world();
  int written = 0;
  auto seed = [&](char mode, const std::string& body) {
    std::ofstream(out / ("seed-" + std::to_string(written++)), std::ios::binary) << mode << body;
  };
  seed(0, w->base_push);
  seed(0, w->next_bundle_push);
  pb::Push next;
  next.ParseFromString(w->next_bundle_push);
  pb::PolicyBundle b;
  b.ParseFromString(next.bundle().bundle());
  seed(1, b.SerializeAsString());
  seed(2, std::string(kNext));
  seed(3, compute_delta(*w->base_policy, 1, *w->next_policy, 2).SerializeAsString());
  seed(4, w->keys.SerializeAsString());
  // Every policy directory of the repository as YAML (mode 2).
  const fs::path root = fs::path(__FILE__).parent_path() / ".." / "..";
  std::map<fs::path, std::vector<fs::path>> dirs;
  for (const char* top : {"appliance", "tests/rules/testdata"}) {
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(root / top, ec)) {
      const auto ext = e.path().extension();
      if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml")) dirs[e.path().parent_path()].push_back(e.path());
    }
  }
  for (auto& [dir, files] : dirs) {
    std::sort(files.begin(), files.end());
    std::string joined;
    for (std::size_t i = 0; i < files.size() && i < 4; ++i) {
      std::stringstream ss;
      ss << std::ifstream(files[i], std::ios::binary).rdbuf();
      joined += (i ? "\n%%\n" : "") + ss.str();
    }
    seed(2, joined);
  }
  fs::remove_all(w->root);
  delete w;
  std::printf("%d seeds in %s\n", written, out.c_str());
  return 0;
}
