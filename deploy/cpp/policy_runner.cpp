// policy_runner: load an exported policy and run it in a fixed-rate loop.
//
//   policy_runner POLICY.pt|POLICY.pt2 [--obs FILE|-] [--out FILE] [--rate-hz HZ] [--warmup N]
//
// .pt is the TorchScript module (stateful, has reset()); .pt2 is the AOTInductor package,
// a pure function (obs, prev_action, has_prev, intervention_counts) -> (action, ...state)
// whose state this program holds; a reset is starting again from the initial state.
// Observations: one whitespace-separated row per line (file, or stdin with "-"/no --obs);
// "nan", "inf" and exponents are accepted. All rows are read before the loop starts so
// file I/O never lands inside a control period. Actions: one row per line, 9 significant
// digits (float32 round trip), to stdout or --out. Metadata and latency (p50/p99/max of
// the policy call, microseconds) go to stderr. --rate-hz 0 runs as fast as possible.
// Warm-up calls (TorchScript optimises on its first calls) are followed by a reset, so
// the recorded actions start from a freshly reset safety filter.
//
// This harness reports overruns but is not a watchdog: a real controller must hold a safe
// command when a new one is late, from outside the policy call.

#include <torch/script.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string policy_path;
  std::string obs_path = "-";
  std::string out_path;
  double rate_hz = 0.0;
  int warmup = 20;
};

[[noreturn]] void usage(const std::string& error) {
  std::cerr << "error: " << error << "\n"
            << "usage: policy_runner POLICY.pt [--obs FILE|-] [--out FILE] [--rate-hz HZ] [--warmup N]\n";
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options opts;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--obs") opts.obs_path = value();
    else if (arg == "--out") opts.out_path = value();
    else if (arg == "--rate-hz") opts.rate_hz = std::stod(value());
    else if (arg == "--warmup") opts.warmup = std::stoi(value());
    else if (!arg.empty() && arg[0] == '-') usage("unknown option " + arg);
    else if (opts.policy_path.empty()) opts.policy_path = arg;
    else usage("more than one policy path");
  }
  if (opts.policy_path.empty()) usage("no policy path");
  if (opts.rate_hz < 0.0) usage("--rate-hz must be >= 0");
  return opts;
}

std::vector<std::vector<float>> read_rows(std::istream& in) {
  std::vector<std::vector<float>> rows;
  std::string line, token;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<float> row;
    while (fields >> token) {
      char* end = nullptr;
      float v = std::strtof(token.c_str(), &end);  // strtof, unlike >>, parses nan/inf
      if (end == token.c_str() || *end != '\0') usage("bad number '" + token + "' in observations");
      row.push_back(v);
    }
    if (!row.empty()) rows.push_back(std::move(row));
  }
  return rows;
}

double percentile(std::vector<double> sorted, double q) {
  if (sorted.empty()) return 0.0;
  std::size_t idx = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(idx, sorted.size() - 1)];
}

// One control step and a reset, whichever format the policy was exported in.
class Policy {
 public:
  virtual ~Policy() = default;
  virtual torch::Tensor act(const torch::Tensor& obs) = 0;
  virtual void reset() = 0;
  virtual std::string metadata() = 0;
};

class TorchScriptPolicy : public Policy {
 public:
  explicit TorchScriptPolicy(const std::string& path) : extra_{{"metadata.json", ""}} {
    module_ = torch::jit::load(path, torch::kCPU, extra_);
    module_.eval();
  }
  torch::Tensor act(const torch::Tensor& obs) override { return module_.forward({obs}).toTensor(); }
  void reset() override { module_.run_method("reset"); }
  std::string metadata() override { return extra_["metadata.json"]; }

 private:
  torch::jit::ExtraFilesMap extra_;
  torch::jit::Module module_;
};

class AOTInductorPolicy : public Policy {
 public:
  explicit AOTInductorPolicy(const std::string& path) : loader_(path) {
    auto meta = loader_.get_metadata();
    if (!meta.count("act_dim") || !meta.count("num_intervention_kinds"))
      usage(path + " lacks act_dim/num_intervention_kinds metadata: not written by deploy.export_policy");
    metadata_ = meta["metadata.json"];
    act_dim_ = std::stoll(meta["act_dim"]);
    num_kinds_ = std::stoll(meta["num_intervention_kinds"]);
    reset();
  }
  torch::Tensor act(const torch::Tensor& obs) override {
    // prev_action is ignored while has_prev is false, so zeros are a valid initial value.
    auto out = loader_.boxed_run({obs, prev_, has_prev_, counts_});
    prev_ = out[1];
    has_prev_ = out[2];
    counts_ = out[3];
    return out[0].clone();  // outputs may alias the state fed back next step
  }
  void reset() override {
    prev_ = torch::zeros({act_dim_}, torch::kFloat32);
    has_prev_ = torch::zeros({}, torch::kBool);
    counts_ = torch::zeros({num_kinds_}, torch::kInt64);
  }
  std::string metadata() override { return metadata_; }

 private:
  torch::inductor::AOTIModelPackageLoader loader_;
  std::string metadata_;
  int64_t act_dim_ = 0, num_kinds_ = 0;
  torch::Tensor prev_, has_prev_, counts_;
};

std::unique_ptr<Policy> load_policy(const std::string& path) {
  const auto ends_with = [&](const std::string& suffix) {
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with(".pt2")) return std::make_unique<AOTInductorPolicy>(path);
  if (ends_with(".pt")) return std::make_unique<TorchScriptPolicy>(path);
  usage("policy must be a .pt or .pt2 file: " + path);
}

}  // namespace

int main(int argc, char** argv) {
  const Options opts = parse_args(argc, argv);
  at::set_num_threads(1);
  at::set_num_interop_threads(1);
  c10::InferenceMode inference_mode;

  std::unique_ptr<Policy> policy = load_policy(opts.policy_path);
  std::cerr << "metadata: " << policy->metadata() << "\n";

  std::vector<std::vector<float>> rows;
  if (opts.obs_path == "-") {
    rows = read_rows(std::cin);
  } else {
    std::ifstream file(opts.obs_path);
    if (!file) usage("cannot open " + opts.obs_path);
    rows = read_rows(file);
  }
  if (rows.empty()) usage("no observations");
  const std::size_t obs_dim = rows.front().size();
  for (const auto& row : rows)
    if (row.size() != obs_dim) usage("observation rows differ in length");

  std::vector<torch::Tensor> inputs;
  inputs.reserve(rows.size());
  for (auto& row : rows)
    inputs.push_back(torch::from_blob(row.data(), {static_cast<int64_t>(obs_dim)}, torch::kFloat32));

  for (int i = 0; i < opts.warmup; ++i) policy->act(inputs.front());
  policy->reset();

  std::vector<torch::Tensor> actions;
  actions.reserve(inputs.size());
  std::vector<double> latency_us;
  latency_us.reserve(inputs.size());
  std::size_t overruns = 0;
  const bool paced = opts.rate_hz > 0.0;
  const auto period = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(paced ? 1.0 / opts.rate_hz : 0.0));
  auto deadline = Clock::now();
  for (const auto& obs : inputs) {
    if (paced) std::this_thread::sleep_until(deadline);
    const auto start = Clock::now();
    actions.push_back(policy->act(obs));
    const auto stop = Clock::now();
    latency_us.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
    if (paced) {
      deadline += period;
      if (stop > deadline) ++overruns;
    }
  }

  std::ofstream out_file;
  if (!opts.out_path.empty()) {
    out_file.open(opts.out_path);
    if (!out_file) usage("cannot write " + opts.out_path);
  }
  std::ostream& out = opts.out_path.empty() ? std::cout : out_file;
  char buffer[32];
  for (const auto& action : actions) {
    const auto a = action.contiguous();
    const float* data = a.data_ptr<float>();
    for (int64_t k = 0; k < a.numel(); ++k) {
      std::snprintf(buffer, sizeof(buffer), "%.9g", static_cast<double>(data[k]));
      out << (k ? " " : "") << buffer;
    }
    out << "\n";
  }
  out.flush();

  std::vector<double> sorted = latency_us;
  std::sort(sorted.begin(), sorted.end());
  std::cerr << "steps: " << latency_us.size() << " rate_hz: " << opts.rate_hz << " overruns: " << overruns << "\n"
            << "latency_us p50=" << percentile(sorted, 0.50) << " p99=" << percentile(sorted, 0.99)
            << " max=" << sorted.back() << "\n";
  return 0;
}
