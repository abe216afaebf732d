#pragma once
// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, ext4 and LevelDB.
// Checks spool records on disk. Uses the SSE4.2 crc32 instruction when the CPU has it, a
// slicing-by-8 table otherwise; both give identical results.
//
// Thread-safe (pure functions over immutable tables).

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace spanrelay::spool {

// Continues a CRC: crc32c(b, crc32c(a)) == crc32c(a + b). Start with 0.
std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0) noexcept;

inline std::uint32_t crc32c(std::string_view bytes, std::uint32_t crc = 0) noexcept {
  return crc32c(bytes.data(), bytes.size(), crc);
}

// The portable table implementation, always available (tests compare it with crc32c()).
std::uint32_t crc32c_portable(const void* data, std::size_t size, std::uint32_t crc = 0) noexcept;

}  // namespace spanrelay::spool
