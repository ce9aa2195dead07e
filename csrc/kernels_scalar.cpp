// Portable scalar path and the same code compiled for the x86 POPCNT instruction.
#include "isa.h"

#define HWQ_SCALAR_NS scalar_portable
#include "micro_scalar.h"
#undef HWQ_SCALAR_NS
#define HWQ_EPI_NS scalar_portable
#include "epilogue.h"
#undef HWQ_EPI_NS

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("popcnt")
#define HWQ_SCALAR_NS scalar_popcnt
#include "micro_scalar.h"
#undef HWQ_SCALAR_NS
#define HWQ_EPI_NS scalar_popcnt
#include "epilogue.h"
#undef HWQ_EPI_NS
#pragma GCC pop_options
#endif

namespace hwq {

const KernelTable* table_scalar() {
  static const KernelTable t = {"scalar", scalar_portable::MR, 1, scalar_portable::micro<true>,
                                scalar_portable::micro<false>, scalar_portable::epilogue_int,
                                scalar_portable::epilogue_float, scalar_portable::epilogue_sign,
                                scalar_portable::pack_sign_f32_portable, scalar_portable::peak, 8 * 64, nullptr, 0, 0};
  return &t;
}

const KernelTable* table_scalar_popcnt() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const KernelTable t = {"scalar_popcnt", scalar_popcnt::MR, 1, scalar_popcnt::micro<true>,
                                scalar_popcnt::micro<false>, scalar_popcnt::epilogue_int,
                                scalar_popcnt::epilogue_float, scalar_popcnt::epilogue_sign,
                                scalar_popcnt::pack_sign_f32_portable, scalar_popcnt::peak, 8 * 64, nullptr, 0, 0};
  return &t;
#else
  return nullptr;
#endif
}

}  // namespace hwq
