// A chain MLP's cross-entropy at many parameter points (deepwell/diagnostics/chain_losses.py).
//
// The points are an affine family theta_p = sum_k mix[p, k] * stack_k (a plane: the centre and two
// directions). Each thread takes whole points: it forms a point's weights, runs its forward and
// reduces its loss while that point's activations (examples x width) stay in the core's cache,
// instead of one op at a time over a chunk of points that leaves it (the Python path). The first
// layer's output is affine in the coefficients (its input is the data), so it arrives precomputed per
// stack and is only mixed here; the hidden layers run oneDNN's linear with the activation fused
// (mkldnn::_linear_pointwise: on AMD CPUs ~1.5x MKL's sgemm at these shapes); the head runs
// class-major (classes x examples, a wide GEMM for a narrow head) and the softmax-CE over it is
// vectorised across examples. GIL released; built by deepwell/native.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/utils/pybind.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

namespace {

constexpr int64_t kIgnoreIndex = -100;  // F.cross_entropy's default: such targets count for nothing

using LinearPointwise = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                   c10::string_view, c10::List<std::optional<at::Scalar>>,
                                   std::optional<c10::string_view>);

// One activation in oneDNN's post-op vocabulary (the names _linear_pointwise takes).
struct Activation {
  std::string name;            // none, relu, leaky_relu, tanh, sigmoid, gelu, swish, hardtanh
  std::vector<double> scalars; // leaky_relu: slope; hardtanh: min, max
  std::string algorithm;       // gelu: none or tanh

  c10::List<std::optional<at::Scalar>> scalar_list() const {
    c10::List<std::optional<at::Scalar>> list;
    for (double s : scalars) list.push_back(at::Scalar(s));
    return list;
  }

  // In place, for the precomputed first layer (the others fuse it into their GEMM).
  void apply_(at::Tensor& h) const {
    if (name == "relu") at::relu_(h);
    else if (name == "leaky_relu") at::leaky_relu_(h, scalars.at(0));
    else if (name == "tanh") at::tanh_(h);
    else if (name == "sigmoid") at::sigmoid_(h);
    else if (name == "gelu") at::gelu_(h, algorithm.empty() ? "none" : algorithm);
    else if (name == "swish") at::silu_(h);
    else if (name == "hardtanh") at::hardtanh_(h, scalars.at(0), scalars.at(1));
    else TORCH_CHECK(name == "none", "chain_losses: unknown activation ", name);
  }
};

// out = sum_k mix[k] * stack[k] over `size` numbers (stack: terms x size, contiguous).
template <typename T>
void mix_into(T* out, const T* stack, const T* mix, int64_t terms, int64_t size) {
  for (int64_t i = 0; i < size; ++i) out[i] = mix[0] * stack[i];
  for (int64_t k = 1; k < terms; ++k) {
    const T a = mix[k];
    const T* d = stack + k * size;
    for (int64_t i = 0; i < size; ++i) out[i] += a * d[i];
  }
}

// Sum over counted examples of logsumexp(logits[:, i]) - logits[y_i, i]; logits are class-major (classes, n).
// shifted (classes, n) and sums (n,) are the caller's scratch, reused across points.
template <typename T>
double cross_entropy_sum(const at::Tensor& logits, const int64_t* y, at::Tensor& shifted, at::Tensor& top_,
                         at::Tensor& sums_) {
  const int64_t classes = logits.size(0), n = logits.size(1);
  const T* z = logits.data_ptr<T>();
  T* e = shifted.data_ptr<T>();
  T* top = top_.data_ptr<T>();
  T* sums = sums_.data_ptr<T>();
  for (int64_t i = 0; i < n; ++i) top[i] = z[i];
  for (int64_t c = 1; c < classes; ++c)
    for (int64_t i = 0; i < n; ++i) top[i] = z[c * n + i] > top[i] ? z[c * n + i] : top[i];
  for (int64_t c = 0; c < classes; ++c)
    for (int64_t i = 0; i < n; ++i) e[c * n + i] = z[c * n + i] - top[i];
  at::exp_(shifted);
  for (int64_t i = 0; i < n; ++i) sums[i] = e[i];
  for (int64_t c = 1; c < classes; ++c)
    for (int64_t i = 0; i < n; ++i) sums[i] += e[c * n + i];
  at::log_(sums_);
  double total = 0;
  for (int64_t i = 0; i < n; ++i)
    if (y[i] != kIgnoreIndex) total += double(top[i] + sums[i] - z[y[i] * n + i]);
  return total;
}

// Mean cross-entropy (P,) of the chain at the points mix (P, K+1).
//   first: (K+1, n * width0), the first linear layer's output for each stack (bias included);
//   weights[l], biases[l]: (K+1, out, in) and (K+1, out) or None, for every later linear layer, the head last;
//   activations[l]: (name, scalars, algorithm) after linear layer l, one per layer but the head;
//   y: (n,) class indices, kIgnoreIndex for none.
at::Tensor losses(const at::Tensor& mix, const at::Tensor& y, const at::Tensor& first,
                  const std::vector<at::Tensor>& weights, const std::vector<std::optional<at::Tensor>>& biases,
                  const std::vector<std::string>& names, const std::vector<std::vector<double>>& scalars,
                  const std::vector<std::string>& algorithms) {
  static auto linear = c10::Dispatcher::singleton()
                           .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                           .typed<LinearPointwise>();
  const int64_t layers = static_cast<int64_t>(weights.size());
  TORCH_CHECK(layers >= 1 && static_cast<int64_t>(names.size()) == layers, "chain_losses: one activation per layer but the head");
  TORCH_CHECK(mix.scalar_type() == at::kFloat && first.scalar_type() == at::kFloat, "chain_losses: float32 only");
  TORCH_CHECK(y.scalar_type() == at::kLong && y.dim() == 1, "chain_losses: y holds class indices (int64, one per example)");
  std::vector<Activation> activations;
  for (int64_t l = 0; l < layers; ++l) activations.push_back({names[l], scalars[l], algorithms[l]});
  pybind11::gil_scoped_release no_gil;

  const int64_t points = mix.size(0), terms = mix.size(1), n = y.size(0), width0 = first.size(1) / n;
  const int64_t classes = weights.back().size(1);
  const auto options = mix.options();
  const int64_t* targets = y.data_ptr<int64_t>();
  int64_t counted = 0;
  for (int64_t i = 0; i < n; ++i) counted += targets[i] != kIgnoreIndex;
  at::Tensor result = at::empty({points}, options);
  float* out = result.data_ptr<float>();

  at::parallel_for(0, points, 1, [&](int64_t begin, int64_t end) {
    // This thread's scratch: one point's weights and activations, reused for each of its points.
    std::vector<at::Tensor> w, b;
    for (int64_t l = 0; l < layers; ++l) {
      w.push_back(at::empty({weights[l].size(1), weights[l].size(2)}, options));
      b.push_back(biases[l] ? at::empty({biases[l]->size(1)}, options) : at::Tensor());
    }
    at::Tensor h0 = at::empty({n, width0}, options), logits = at::empty({classes, n}, options);
    at::Tensor shifted = at::empty({classes, n}, options), top = at::empty({n}, options), sums = at::empty({n}, options);
    for (int64_t p = begin; p < end; ++p) {
      const float* m = mix.data_ptr<float>() + p * terms;
      mix_into(h0.data_ptr<float>(), first.data_ptr<float>(), m, terms, n * width0);
      activations[0].apply_(h0);
      at::Tensor h = h0;
      for (int64_t l = 0; l < layers; ++l) {
        mix_into(w[l].data_ptr<float>(), weights[l].data_ptr<float>(), m, terms, w[l].numel());
        std::optional<at::Tensor> bias;
        if (biases[l]) {
          mix_into(b[l].data_ptr<float>(), biases[l]->data_ptr<float>(), m, terms, b[l].numel());
          bias = b[l];
        }
        if (l + 1 < layers) {  // a hidden layer, its activation (the one after it) fused
          const Activation& act = activations[l + 1];
          std::optional<c10::string_view> algorithm;
          if (!act.algorithm.empty()) algorithm = act.algorithm;
          h = linear.call(h, w[l], bias, act.name, act.scalar_list(), algorithm);
        } else if (bias) {     // the head, class-major: (classes, in) @ (in, n) + bias
          at::addmm_out(logits, bias->unsqueeze(1), w[l], h.t());
        } else {
          at::mm_out(logits, w[l], h.t());
        }
      }
      out[p] = static_cast<float>(cross_entropy_sum<float>(logits, targets, shifted, top, sums) / counted);
    }
  });
  return result;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("losses", &losses, "A chain MLP's mean cross-entropy at many parameter points (see chain_losses.py)");
}
