// Function offsets from the executable's load address, and the build id.

#include <simul/procpool/detail/code_address.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace {

int triple(int x) { return 3 * x; }

TEST(CodeAddress, AFunctionInTheExecutableRoundTripsThroughItsOffset) {
  const std::uint64_t offset = simul::detail::code_offset(&triple);
  const auto back = simul::detail::code_from_offset<int (*)(int)>(offset);
  EXPECT_EQ(back, &triple);
  EXPECT_EQ(back(7), 21);
  const auto& image = simul::detail::this_executable();
  EXPECT_LT(image.code_begin, image.code_end);
  EXPECT_EQ(offset, reinterpret_cast<std::uintptr_t>(&triple) - image.base);
}

TEST(CodeAddress, AFunctionInASharedLibraryIsRefused) {
  // strlen lives in the C library, a shared object this test links dynamically.
  EXPECT_THROW((void)simul::detail::code_offset(&std::strlen), simul::code_address_error);
}

TEST(CodeAddress, AnOffsetOutsideTheExecutablesCodeIsRefused) {
  const auto& image = simul::detail::this_executable();
  const std::uint64_t past_end = image.code_end - image.base;
  EXPECT_THROW((void)simul::detail::code_at_offset(past_end), simul::code_address_error);
  EXPECT_THROW((void)simul::detail::code_at_offset(~std::uint64_t{0} / 2), simul::code_address_error);
  EXPECT_NO_THROW((void)simul::detail::code_at_offset(past_end - 1));
}

TEST(CodeAddress, TheBuildIdNamesThisExecutableAndIsStable) {
  const std::string& id = simul::detail::executable_build_id();
  // Debian's toolchain links with --build-id, so the note is there.
  ASSERT_EQ(id.rfind("build-id:", 0), 0U) << id;
  EXPECT_GE(id.size(), std::string("build-id:").size() + 16);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 9), std::string::npos) << id;
  EXPECT_EQ(&simul::detail::executable_build_id(), &id);
}

} // namespace
