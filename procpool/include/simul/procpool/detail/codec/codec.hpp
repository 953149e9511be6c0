#pragma once

// How values cross the process boundary (internal).
//
// Three paths, chosen at compile time:
// - `std::string` and `std::vector<T>` of trivially copyable `T`: a length and
//   the contiguous bytes (a memfd above the pool's threshold);
// - classes cereal can save and load (strings, containers, optional, variant,
//   tuple, pair, user types with `serialize(Archive&)` or save/load): cereal's
//   binary format, even when they are trivially copyable, decoded through
//   bounded_input_archive (no length inside is trusted past the bytes left);
// - any other trivially copyable type that is not a pointer: its bytes;
// - `shared_buffer`: its memfd's descriptor, no bytes at all; inside a value
//   that goes through cereal, its size in the archive and its descriptor
//   after the message's others.
// `wire_type<T>` says whether T has a path; the pool's static_asserts use it.

#include <simul/procpool/detail/codec/bounded_archive.hpp>
#include <simul/procpool/detail/codec/message.hpp>
#include <simul/procpool/shared_buffer.hpp>

#include <cereal/archives/binary.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/deque.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include <cstddef>
#include <cstring>
#include <ostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace simul::detail {

template <class T>
struct is_contiguous_blob : std::false_type {};
template <>
struct is_contiguous_blob<std::string> : std::true_type {};
template <class T, class A>
struct is_contiguous_blob<std::vector<T, A>>
    : std::bool_constant<std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> && !std::is_member_pointer_v<T> &&
                         !std::is_same_v<T, bool>> {};

template <class T>
inline constexpr bool is_bitwise =
    std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> && !std::is_member_pointer_v<T> &&
    !std::is_reference_v<T> && !std::is_array_v<T> && !std::is_function_v<T>;

template <class T>
inline constexpr bool is_cereal_type = cereal::traits::is_output_serializable<T, cereal::BinaryOutputArchive>::value&&
    cereal::traits::is_input_serializable<T, bounded_input_archive>::value&& std::is_default_constructible_v<T>;

/// A class cereal knows goes through cereal even if it is trivially copyable:
/// its own serialize() says what matters (a plain struct without one is bytes).
template <class T>
inline constexpr bool uses_cereal = std::is_class_v<T> && !is_contiguous_blob<T>::value && is_cereal_type<T>;

/// A shared_buffer travels as its descriptor (shared_buffer.cpp).
void encode_shared(out_message& out, const shared_buffer& buffer);
shared_buffer decode_shared(in_message& in);

/// While a value goes through cereal, the descriptors of the shared_buffers
/// inside it are collected in `sink` (encoding) or taken from `in` (decoding),
/// in the order cereal meets them. One scope per thread at a time; scopes
/// restore the previous one, so they nest.
class nested_fds_out {
 public:
  explicit nested_fds_out(std::vector<unique_fd>& sink) noexcept;
  nested_fds_out(const nested_fds_out&) = delete;
  nested_fds_out& operator=(const nested_fds_out&) = delete;
  ~nested_fds_out();

 private:
  std::vector<unique_fd>* m_previous;
};
class nested_fds_in {
 public:
  explicit nested_fds_in(in_message& in) noexcept;
  nested_fds_in(const nested_fds_in&) = delete;
  nested_fds_in& operator=(const nested_fds_in&) = delete;
  ~nested_fds_in();

 private:
  in_message* m_previous;
};

/// True if a value of type T can travel to a worker and back.
template <class T>
inline constexpr bool wire_type = !std::is_pointer_v<T> && !std::is_reference_v<T> &&
                                  (std::is_same_v<T, shared_buffer> || is_contiguous_blob<T>::value || is_bitwise<T> ||
                                   (std::is_class_v<T> && is_cereal_type<T>));

template <class T>
void encode(out_message& out, const T& value) {
  if constexpr (std::is_same_v<T, shared_buffer>) {
    encode_shared(out, value);
  } else if constexpr (is_contiguous_blob<T>::value) {
    out.put_blob(value.data(), value.size() * sizeof(typename T::value_type));
  } else if constexpr (!uses_cereal<T> && is_bitwise<T>) {
    out.put_pod(value);
  } else {
    static_assert(is_cereal_type<T>, "simul::process_pool: this type cannot be serialized");
    std::ostringstream stream(std::ios::binary);
    std::vector<unique_fd> nested; // shared_buffers inside the value
    {
      nested_fds_out scope(nested);
      cereal::BinaryOutputArchive archive(stream);
      archive(value);
    }
    const std::string text = std::move(stream).str();
    out.put_blob(text.data(), text.size());
    // After the blob's own memfd, if it has one: decode meets them in this order.
    for (auto& fd : nested) {
      out.fds.push_back(std::move(fd));
    }
  }
}

template <class T>
T decode(in_message& in) {
  if constexpr (std::is_same_v<T, shared_buffer>) {
    return decode_shared(in);
  } else if constexpr (is_contiguous_blob<T>::value) {
    using V = typename T::value_type;
    const auto bytes = in.begin_blob();
    if (bytes % sizeof(V) != 0) {
      throw serialization_error("process_pool: a payload's size is not a multiple of its element size");
    }
    T value;
    if (bytes >= k_huge_payload) {
      // Reserve (untouched), advise, then fill: the fill faults in huge pages.
      value.reserve(bytes / sizeof(V));
      advise_huge_pages(value.data(), bytes);
    }
    const char* from = in.blob_data(bytes);
    if constexpr (std::is_same_v<T, std::string>) {
      value.append(from, bytes); // one pass from the message or the memfd's mapping
    } else if constexpr (sizeof(V) == 1 && (std::is_same_v<V, unsigned char> || std::is_same_v<V, char> ||
                                            std::is_same_v<V, std::byte>)) {
      const auto* first = reinterpret_cast<const V*>(from); // byte types may alias anything
      value.insert(value.end(), first, first + bytes);
    } else {
      value.resize(bytes / sizeof(V));
      if (bytes > 0) {
        std::memcpy(static_cast<void*>(value.data()), from, bytes);
      }
    }
    in.end_blob();
    return value;
  } else if constexpr (!uses_cereal<T> && is_bitwise<T>) {
    return in.get_pod<T>();
  } else {
    const auto bytes = in.begin_blob();
    T value{};
    try {
      nested_fds_in scope(in);
      bounded_input_archive archive(in.blob_data(bytes), bytes); // in place: no copy; lengths checked
      archive(value);
    } catch (const cereal::Exception& e) {
      throw serialization_error(std::string("process_pool: could not decode a value: ") + e.what());
    }
    in.end_blob();
    return value;
  }
}

} // namespace simul::detail
