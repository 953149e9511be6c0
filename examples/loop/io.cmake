# Examples of the loop's I/O. Included from examples/loop/CMakeLists.txt.
simul_add_example(loop_io_echo
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/io_echo.cpp
  LIBS simul::loop
  PASS_REGULAR_EXPRESSION "client A got: A1 A2 A3\nclient B got: B1 B2 B3\nclient C got: C1 C2 C3\nserver handled 3 connections, 9 lines\nconnecting to the closed server: connection refused \\(ECONNREFUSED\\)")
simul_add_example(loop_io_loop_per_thread
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/io_loop_per_thread.cpp
  LIBS simul::loop
  PASS_REGULAR_EXPRESSION "loops on [0-9]+ threads share port [0-9]+\n[0-9]+ connections answered\nevery loop served some: yes")
simul_add_example(loop_io_adopt
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/io_adopt.cpp
  LIBS simul::loop
  PASS_REGULAR_EXPRESSION "worker ready on 127.0.0.1:[0-9]+\n3 clients answered by the worker process: yes\nworker exited with status 0")
simul_add_example(loop_io_tls
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/io_tls.cpp
  LIBS simul::loop
  PASS_REGULAR_EXPRESSION "client 1 over TLSv1\\.[23] to O=simul test certificate,CN=localhost: hello over TLS\nclient 2 refused the server: certificate verify failed: self-signed certificate\nserver: 1 connection served, 1 handshake failed")
target_compile_definitions(loop_io_tls PRIVATE SIMUL_TLS_DATA_DIR="${PROJECT_SOURCE_DIR}/data/tls")
