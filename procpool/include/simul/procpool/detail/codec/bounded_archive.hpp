#pragma once

// cereal's binary input format, read from bytes in memory with every length
// checked before anything is allocated (internal).
//
// cereal's own BinaryInputArchive trusts the lengths inside an archive: a
// string or container whose size tag claims 1 TiB makes it call
// `resize(1 TiB)` before it reads a byte. The bytes of a value come from
// another process (a worker, a rank), which must never be able to make the
// decoding side allocate what it merely claims. This archive reads the same
// bytes cereal::BinaryOutputArchive writes; every size tag larger than the
// bytes left in the archive is a `serialization_error`, thrown before the
// container is sized. (Every element of a container takes at least one byte,
// except values of empty types: a container of more empty values than the
// archive has bytes left is refused too.)
//
// Thread-safety: one archive per decoding call; it is not shared.
// Lifetime: borrows the bytes it reads; they must outlive it.

#include <simul/core/error.hpp>

#include <cereal/archives/binary.hpp>
#include <cereal/cereal.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

namespace simul::detail {

/// Reads what cereal::BinaryOutputArchive wrote, bounded by its input.
class bounded_input_archive : public cereal::InputArchive<bounded_input_archive, cereal::AllowEmptyClassElision> {
 public:
  bounded_input_archive(const char* data, std::size_t size) noexcept
      : cereal::InputArchive<bounded_input_archive, cereal::AllowEmptyClassElision>(this), m_data(data), m_left(size) {}

  /// Copies the next `size` bytes to `out`; throws if fewer are left.
  void loadBinary(void* out, std::size_t size) {
    if (size > m_left) {
      throw serialization_error("simul: a value's encoding is truncated (wanted " + std::to_string(size) +
                                " more bytes, " + std::to_string(m_left) + " left)");
    }
    if (size > 0) {
      std::memcpy(out, m_data, size);
    }
    m_data += size;
    m_left -= size;
  }

  /// Checks a length read from the archive against the bytes left.
  void check_length(std::uint64_t length) const {
    if (length > m_left) {
      throw serialization_error("simul: a value's encoding claims " + std::to_string(length) + " elements with only " +
                                std::to_string(m_left) + " bytes left (a forged or corrupt length)");
    }
  }

  [[nodiscard]] std::size_t bytes_left() const noexcept { return m_left; }

 private:
  const char* m_data;
  std::size_t m_left;
};

// The functions cereal finds (by argument-dependent lookup) for this archive.

template <class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_LOAD_FUNCTION_NAME(bounded_input_archive& ar, T& t) {
  ar.loadBinary(std::addressof(t), sizeof(t));
}

template <class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(bounded_input_archive& ar, cereal::NameValuePair<T>& t) {
  ar(t.value);
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(bounded_input_archive& ar, cereal::SizeTag<T>& t) {
  std::uint64_t length = 0; // BinaryOutputArchive writes cereal::size_type, 64 bits
  static_assert(sizeof(cereal::size_type) == sizeof(length));
  ar.loadBinary(&length, sizeof(length));
  ar.check_length(length);
  t.size = static_cast<std::remove_reference_t<T>>(length);
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(bounded_input_archive& ar, cereal::BinaryData<T>& bd) {
  ar.loadBinary(bd.data, static_cast<std::size_t>(bd.size));
}

} // namespace simul::detail

// Pairs it with the output archive, for types with save_minimal/load_minimal.
namespace cereal::traits::detail {
template <>
struct get_output_from_input<simul::detail::bounded_input_archive> {
  using type = cereal::BinaryOutputArchive;
};
} // namespace cereal::traits::detail
