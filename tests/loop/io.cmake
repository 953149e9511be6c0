# Tests of the loop's I/O, compiled into simul_loop_tests. Included from
# tests/loop/CMakeLists.txt.
target_sources(simul_loop_tests PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/io_stream_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/io_misc_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/io_adopt_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/io_subprocess_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/io_soak_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/io_tls_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/io_connect_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/io_hostile_test.cpp)
# The TLS tests' certificate and keys (data/tls/README.md).
target_compile_definitions(simul_loop_tests PRIVATE SIMUL_TLS_DATA_DIR="${PROJECT_SOURCE_DIR}/data/tls")
# io_connect_test.cpp also checks a private helper (interleave_families).
target_include_directories(simul_loop_tests PRIVATE ${PROJECT_SOURCE_DIR}/loop/src)
