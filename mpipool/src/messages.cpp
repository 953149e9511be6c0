// Helpers of the rank 0 <-> worker protocol (see messages.hpp).

#include "messages.hpp"

#include "runtime.hpp"

#include <simul/mpipool/errors.hpp>

#include <algorithm>
#include <exception>
#include <limits>
#include <new>

namespace simul::detail {

mpi_header read_header(const char* data, std::size_t size) {
  mpi_header header;
  if (size < sizeof header) {
    throw serialization_error("mpi_pool: a message of " + std::to_string(size) + " bytes is shorter than a header");
  }
  std::memcpy(&header, data, sizeof header);
  if (header.magic != k_mpi_magic) {
    throw serialization_error("mpi_pool: a message with a foreign header (not simul's protocol)");
  }
  return header;
}

void check_no_descriptors(const out_message& out, const char* what) {
  if (!out.fds.empty()) {
    throw serialization_error(std::string("mpi_pool: ") + what +
                              " holds a shared_buffer, which names memory on one machine and cannot travel to "
                              "another rank; send its bytes (a std::vector) instead");
  }
}

void check_message_size(const out_message& out, const char* what) {
  const std::size_t limit = static_cast<std::size_t>(std::numeric_limits<int>::max());
  const std::size_t size = std::max(out.bytes.size(), out.apart.size);
  if (size > limit) {
    throw serialization_error(std::string("mpi_pool: ") + what + " of " + std::to_string(size) +
                              " bytes is over MPI's 2 GiB message limit");
  }
}

} // namespace simul::detail

namespace simul::detail {

namespace {
constexpr std::size_t k_buffer_alignment = std::size_t{2} << 20; // a huge page
constexpr std::size_t k_keep_at_most = std::size_t{256} << 20;
} // namespace

void received_message::aligned_delete::operator()(char* p) const noexcept {
  ::operator delete (p, std::align_val_t{k_buffer_alignment});
}

namespace {

/// Receives the probed `message` into `out`'s buffer.
void receive_into(MPI_Message& message, const MPI_Status& status, received_message& out) {
  int count = 0;
  check_mpi(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count");
  out.size = static_cast<std::size_t>(count);
  // Keep the buffer unless it is too small, or big and now mostly idle.
  if (out.size > out.capacity || (out.capacity > k_keep_at_most && out.size < out.capacity / 2)) {
    out.buffer.reset();
    out.capacity = std::max<std::size_t>(out.size, 4096);
    out.buffer.reset(static_cast<char*>(::operator new (out.capacity, std::align_val_t{k_buffer_alignment})));
    if (out.capacity >= k_huge_payload) {
      advise_huge_pages(out.buffer.get(), out.capacity); // 32 faults for 64 MiB instead of 16,384
    }
  }
  out.source = status.MPI_SOURCE;
  check_mpi(MPI_Mrecv(out.data(), count, MPI_BYTE, &message, MPI_STATUS_IGNORE), "MPI_Mrecv");
}

} // namespace

bool try_receive(MPI_Comm comm, int source, received_message& out) {
  int flag = 0;
  MPI_Message message = MPI_MESSAGE_NULL;
  MPI_Status status;
  check_mpi(MPI_Improbe(source, k_tag, comm, &flag, &message, &status), "MPI_Improbe");
  if (flag == 0) {
    return false;
  }
  receive_into(message, status, out);
  return true;
}

void receive_apart(MPI_Comm comm, int source, std::size_t bytes, received_message& out) {
  // The worker sends these bytes right after the answer that announced them.
  MPI_Message message = MPI_MESSAGE_NULL;
  MPI_Status status;
  check_mpi(MPI_Mprobe(source, k_apart_tag, comm, &message, &status), "MPI_Mprobe");
  receive_into(message, status, out);
  if (out.size != bytes) {
    throw mpi_error("mpi_pool: rank " + std::to_string(source) + " announced a result of " + std::to_string(bytes) +
                    " bytes and sent " + std::to_string(out.size) + " (a corrupt message)");
  }
}

void send_blocking(MPI_Comm comm, int dest, const std::string& bytes, const char* what) {
  send_blocking(comm, dest, bytes.data(), bytes.size(), k_tag, what);
}

void send_blocking(MPI_Comm comm, int dest, const void* data, std::size_t size, int tag, const char* what) {
  if (size > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw serialization_error(std::string("mpi_pool: ") + what + " of " + std::to_string(size) +
                              " bytes is over MPI's 2 GiB message limit");
  }
  check_mpi(MPI_Send(data, static_cast<int>(size), MPI_BYTE, dest, tag, comm), what);
}

} // namespace simul::detail
