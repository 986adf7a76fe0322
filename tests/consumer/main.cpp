#include <torch/torch.h>
#include <torch_rational/torch_rational.h>

#include <iostream>

int main() {
  torch::manual_seed(0);
  torch_rational::nn::PAU act;
  auto x = torch::linspace(-3, 3, 101).requires_grad_(true);
  auto y = act(x);
  y.sum().backward();
  // PAU starts as leaky_relu(0.01): the output must be close to it and the gradient defined.
  const double err = (y - torch::leaky_relu(x, 0.01)).abs().max().item<double>();
  const bool grads = x.grad().defined() && act->numerator.grad().defined() && act->denominator.grad().defined();
  std::cout << "consumer: max |PAU - leaky_relu| = " << err << ", grads: " << grads << std::endl;
  return (err < 0.05 && grads) ? 0 : 1;
}
