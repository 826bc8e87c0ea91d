#pragma once
/// VGUIDE_ARG(T, name): a typed option field with a chained setter and a getter,
/// modelled on TORCH_ARG. Defaults go on the field.
///
/// Example: struct NormalOptions { VGUIDE_ARG(double, init_scale) = 0.1; };
///          NormalOptions().init_scale(0.5).init_scale() == 0.5
#include <utility>

#define VGUIDE_ARG(T, name)                                            \
 public:                                                               \
  inline auto name(const T& new_##name)->decltype(*this) {             \
    this->name##_ = new_##name;                                        \
    return *this;                                                      \
  }                                                                    \
  inline auto name(T&& new_##name)->decltype(*this) {                  \
    this->name##_ = std::move(new_##name);                             \
    return *this;                                                      \
  }                                                                    \
  inline const T& name() const noexcept { return this->name##_; }      \
                                                                       \
 private:                                                              \
  T name##_ /* NOLINT */
