// Writes the seed corpus for policy_yaml_fuzz: every policy directory of the repository (the
// example policy, the lab policies, the rules tests' data) as one input each, its files joined by
// "%%" lines the way the fuzz target splits them, plus each file on its own.
//   policy_yaml_seeds OUT_DIR [IGNORED]
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  fs::create_directories(out);
  const fs::path root = fs::path(__FILE__).parent_path() / ".." / "..";
  std::map<fs::path, std::vector<fs::path>> dirs;  // sorted: the same seeds every run
  for (const char* top : {"appliance", "tests/rules/testdata", "tests/component"}) {
    std::error_code ec;
    if (!fs::is_directory(root / top, ec)) continue;
    for (const auto& e : fs::recursive_directory_iterator(root / top, ec)) {
      const auto ext = e.path().extension();
      if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml"))
        dirs[e.path().parent_path()].push_back(e.path());
    }
  }
  int written = 0;
  auto write_seed = [&](const std::string& text) {
    if (text.size() > 16384) return;
    std::ofstream(out / ("seed-" + std::to_string(written++)), std::ios::binary) << text;
  };
  for (auto& [dir, files] : dirs) {
    std::sort(files.begin(), files.end());
    std::string joined;
    for (std::size_t i = 0; i < files.size() && i < 4; ++i) {
      std::stringstream ss;
      ss << std::ifstream(files[i], std::ios::binary).rdbuf();
      write_seed(ss.str());
      joined += (i ? "\n%%\n" : "") + ss.str();
    }
    write_seed(joined);
  }
  std::printf("%d seeds in %s\n", written, out.c_str());
  return written > 0 ? 0 : 1;
}
