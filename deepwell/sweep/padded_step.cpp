// The padded layout's training step (deepwell/sweep/padded.py, _Padded.train_step) in C++.
//
// The same calls in the same order as the Python step, so the same numbers bit for bit; what goes
// is the interpreter between them (~90 calls a step: ~4% of a double-descent sweep step on a CPU)
// and the GIL, released for the whole step, so a sweep's shards can be threads. The batched matmuls
// are OpenBLAS's sgemm where deepwell/native.py links it (faster than torch's MKL at the sweep's small
// shapes: 1.17x with the AVX2 kernels, ~1.9x with the AVX-512 ones on an AMD EPYC; see native.py);
// the Python step calls the same `bmm` through this module. Built on demand by deepwell/native.py
// and cached on disk; without a compiler the Python step runs with torch.bmm.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/utils/pybind.h>
#include <pybind11/stl.h>

#include <optional>
#include <vector>

#ifdef DEEPWELL_OPENBLAS
#include <cblas.h>
#endif

namespace {

#ifdef DEEPWELL_OPENBLAS
// How sgemm reads a (G, rows, cols) operand's matrices: row-major or transposed, and the leading dimension.
bool blas_layout(const at::Tensor& t, CBLAS_TRANSPOSE& trans, blasint& ld) {
  const int64_t rows = t.size(1), cols = t.size(2);
  if (t.stride(2) == 1 && t.stride(1) >= std::max<int64_t>(1, cols)) {
    trans = CblasNoTrans;
    ld = static_cast<blasint>(std::max<int64_t>(1, t.stride(1)));
    return true;
  }
  if (t.stride(1) == 1 && t.stride(2) >= std::max<int64_t>(1, rows)) {
    trans = CblasTrans;
    ld = static_cast<blasint>(std::max<int64_t>(1, t.stride(2)));
    return true;
  }
  return false;
}
#endif

// out (G, M, N) = a (G, M, K) @ b (G, K, N): one sgemm a member through OpenBLAS for float32 operands
// it can read in place (row-major or transposed matrices, any batch stride), torch's bmm otherwise.
at::Tensor& batched_mm_out(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
#ifdef DEEPWELL_OPENBLAS
  CBLAS_TRANSPOSE ta, tb, tc;
  blasint lda, ldb, ldc;
  const int64_t members = a.size(0), m = a.size(1), k = a.size(2), n = b.size(2);
  if (a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat && out.scalar_type() == at::kFloat &&
      a.is_cpu() && b.is_cpu() && out.is_cpu() && members > 0 && m > 0 && n > 0 && k > 0 &&
      b.size(0) == members && b.size(1) == k && out.dim() == 3 && out.size(0) == members && out.size(1) == m &&
      out.size(2) == n && blas_layout(a, ta, lda) && blas_layout(b, tb, ldb) && blas_layout(out, tc, ldc) &&
      tc == CblasNoTrans) {
    const float* pa = a.data_ptr<float>();
    const float* pb = b.data_ptr<float>();
    float* pc = out.data_ptr<float>();
    for (int64_t g = 0; g < members; ++g) {
      scipy_cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, pa + g * a.stride(0), lda, pb + g * b.stride(0), ldb, 0.0f,
                        pc + g * out.stride(0), ldc);
    }
    return out;
  }
#endif
  return at::bmm_out(out, a, b);
}

at::Tensor batched_mm(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor out = at::empty({a.size(0), a.size(1), b.size(2)}, a.options());
  return batched_mm_out(out, a, b);
}

// The module's own bmm for the Python step: torch.bmm's signature (out optional), the same sgemm as the C++ step.
at::Tensor bmm_call(const at::Tensor& a, const at::Tensor& b, std::optional<at::Tensor> out) {
  pybind11::gil_scoped_release no_gil;
  if (!out) return batched_mm(a, b);
  return batched_mm_out(*out, a, b);
}

enum Activation : int64_t { kIdentity = 0, kRelu = 1, kLeakyRelu = 2, kTanh = 3, kSigmoid = 4 };

at::Tensor activate(const at::Tensor& h, int64_t activation, double slope) {
  switch (activation) {
    case kLeakyRelu: return at::leaky_relu(h, slope);
    case kTanh: return at::tanh(h);
    case kSigmoid: return at::sigmoid(h);
    default: return h;
  }
}

// The activation of pre-activations h (G, units, B), written into the next layer's input.
void activate_into(const at::Tensor& h, at::Tensor& out, const at::Tensor* mask, int64_t activation, double slope) {
  if (activation == kRelu) {
    at::clamp_min_out(out, h, 0);
  } else if (mask != nullptr) {
    at::mul_out(out, activate(h, activation, slope), mask->unsqueeze(2));
  } else {
    out.copy_(activate(h, activation, slope));
  }
}

// d loss / d pre-activation from d loss / d activation (the step's own temporary) and the activation's output.
at::Tensor derivative(at::Tensor grad, const at::Tensor& out, const at::Tensor* mask, int64_t activation, double slope) {
  if (activation == kRelu) {
    return at::threshold_backward_out(grad, grad, out, 0);
  }
  if (activation == kLeakyRelu) {
    grad = grad * at::where(out > 0, at::Scalar(1.0), at::Scalar(slope));
  } else if (activation == kTanh) {
    grad = grad * (1 - out * out);
  } else if (activation == kSigmoid) {
    grad = grad * out * (1 - out);
  }
  return mask != nullptr ? grad * mask->unsqueeze(2) : grad;
}

// Forward, cross-entropy and backward of every bucket; writes the [weight | bias] gradients into grads.
// Per bucket b and layer l, index b * depth + l: blocks, weights_t, grads, inputs, hidden, transposed;
// masks: b * (depth - 1) + l, empty when the activation keeps padded units at zero by itself.
at::Tensor train_step(const std::vector<at::Tensor>& blocks, const std::vector<at::Tensor>& weights_t,
                      std::vector<at::Tensor> grads, const std::vector<at::Tensor>& inputs,
                      std::vector<at::Tensor> hidden, const std::vector<at::Tensor>& transposed,
                      std::vector<at::Tensor> logits, const std::vector<at::Tensor>& log_p, at::Tensor log_p_full,
                      const at::Tensor& logits_full, const at::Tensor& minus_ones, const std::vector<at::Tensor>& masks,
                      const at::Tensor& y, int64_t depth, int64_t activation, double slope) {
  pybind11::gil_scoped_release no_gil;
  c10::AutoGradMode no_grad(false);
  const auto buckets = static_cast<int64_t>(logits.size());
  auto mask = [&](int64_t bucket, int64_t layer) -> const at::Tensor* {
    return masks.empty() ? nullptr : &masks[bucket * (depth - 1) + layer];
  };
  for (int64_t b = 0; b < buckets; ++b) {
    for (int64_t l = 0; l < depth; ++l) {
      const int64_t i = b * depth + l;
      if (l == depth - 1) {
        batched_mm_out(logits[b], blocks[i], inputs[i]);
      } else {
        activate_into(batched_mm(blocks[i], inputs[i]), hidden[i + 1], mask(b, l), activation, slope);
      }
    }
  }
  at::log_softmax_out(log_p_full, logits_full, 1);
  const at::Tensor target = y.unsqueeze(1);
  at::Tensor losses = -log_p_full.gather(1, target).squeeze(1).mean(1);
  log_p_full.exp_().scatter_add_(1, target, minus_ones).div_(y.size(1));
  for (int64_t b = 0; b < buckets; ++b) {
    at::Tensor delta = log_p[b];
    for (int64_t l = depth - 1; l >= 0; --l) {
      const int64_t i = b * depth + l;
      batched_mm_out(grads[i], delta, transposed[i]);
      if (l > 0) {
        delta = derivative(batched_mm(weights_t[i], delta), hidden[i], mask(b, l - 1), activation, slope);
      }
    }
  }
  return losses;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("train_step", &train_step, "The padded layout's training step (see deepwell/sweep/padded.py)");
  m.def("bmm", &bmm_call, "torch.bmm through the step's own sgemm", pybind11::arg("a"), pybind11::arg("b"),
        pybind11::kw_only(), pybind11::arg("out") = pybind11::none());
}
