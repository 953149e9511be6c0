# Helpers shared by the module folders, so each module's CMakeLists.txt names
# only its sources and its own dependencies.

include(GNUInstallDirs)

set(SIMUL_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/simul")

# simul_add_module(<name>
#   [SOURCES <file>...]              compiled sources; none makes a header-only module
#   [PUBLIC_DEPS <target>...]        what users of the module link too
#   [PRIVATE_DEPS <target>...]       what only the module's sources use
#   [CONFIG_DEPENDENCIES <text>]     CMake code run by simulConfig.cmake before the
#                                    module's targets are loaded (find_dependency ...)
#   [PKGCONFIG_REQUIRES <name>...])  pkg-config packages the module needs at link time
#
# Makes target simul_<name>, alias simul::<name>, headers from <folder>/include,
# and, when SIMUL_INSTALL is on, its install rules and export set.
function(simul_add_module name)
  cmake_parse_arguments(ARG "" "CONFIG_DEPENDENCIES" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS;PKGCONFIG_REQUIRES" ${ARGN})
  set(target simul_${name})
  if(ARG_SOURCES)
    add_library(${target} ${ARG_SOURCES})
    set(scope PUBLIC)
    # A shared build names the ABI: 0.x releases may break it at every minor
    # version, so the SONAME carries major.minor (libsimul_loop.so.0.1).
    set_target_properties(${target} PROPERTIES VERSION ${PROJECT_VERSION}
                                               SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
    target_include_directories(${target} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
    target_link_libraries(${target} PRIVATE $<BUILD_INTERFACE:simul_warnings>)
    set_property(GLOBAL APPEND PROPERTY SIMUL_COMPILED_MODULES ${name})
  else()
    add_library(${target} INTERFACE)
    set(scope INTERFACE)
  endif()
  add_library(simul::${name} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${name} OUTPUT_NAME simul_${name})
  target_include_directories(${target} ${scope}
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_features(${target} ${scope} cxx_std_20)
  if(ARG_PUBLIC_DEPS)
    target_link_libraries(${target} ${scope} ${ARG_PUBLIC_DEPS})
  endif()
  if(ARG_PRIVATE_DEPS)
    target_link_libraries(${target} PRIVATE ${ARG_PRIVATE_DEPS})
  endif()
  set_property(GLOBAL APPEND PROPERTY SIMUL_MODULES ${name})
  set_property(GLOBAL APPEND PROPERTY SIMUL_PKGCONFIG_REQUIRES ${ARG_PKGCONFIG_REQUIRES})

  if(SIMUL_INSTALL)
    set(deps_file "${PROJECT_BINARY_DIR}/simul-${name}-dependencies.cmake")
    file(WRITE "${deps_file}" "include(CMakeFindDependencyMacro)\n${ARG_CONFIG_DEPENDENCIES}\n")
    install(TARGETS ${target} EXPORT simul-${name}-targets
      ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
      LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
      RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
    install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
    install(EXPORT simul-${name}-targets NAMESPACE simul:: DESTINATION ${SIMUL_CMAKE_INSTALL_DIR})
    install(FILES "${deps_file}" DESTINATION ${SIMUL_CMAKE_INSTALL_DIR})
  endif()
endfunction()

# simul_add_test(<module> SOURCES <file>... [LIBS <target>...] [TIMEOUT <seconds>])
#
# One GoogleTest executable per module, every test discovered into ctest with
# the module's label and a timeout.
function(simul_add_test module)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  set(target simul_${module}_tests)
  add_executable(${target} ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE simul::${module} ${ARG_LIBS} GTest::gtest GTest::gtest_main simul_warnings)
  gtest_discover_tests(${target}
    DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS ${module})
endfunction()

# simul_add_example(<name> SOURCES <file>... [LIBS <target>...] [ARGS <arg>...]
#                   [PASS_REGULAR_EXPRESSION <regex>])
#
# A whole program under examples/, built always and run by ctest with the
# label `example`.
function(simul_add_example name)
  cmake_parse_arguments(ARG "" "PASS_REGULAR_EXPRESSION" "SOURCES;LIBS;ARGS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} simul_warnings)
  add_test(NAME example.${name} COMMAND ${name} ${ARG_ARGS})
  set_tests_properties(example.${name} PROPERTIES LABELS example TIMEOUT 120)
  if(ARG_PASS_REGULAR_EXPRESSION)
    set_tests_properties(example.${name} PROPERTIES PASS_REGULAR_EXPRESSION "${ARG_PASS_REGULAR_EXPRESSION}")
  endif()
endfunction()
