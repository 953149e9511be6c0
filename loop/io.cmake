# The loop's I/O (streams, servers, TLS, DNS, UDP, files, signals, subprocesses):
# sources added to simul_loop. Included from loop/CMakeLists.txt.
target_sources(simul_loop PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/src/io/io_common.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/io/stream.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/io/server.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/io/dns.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/io/udp.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/io/files.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/io/signals.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/io/subprocess.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/io/tls.cpp)
