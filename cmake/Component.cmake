# hallmark_component(NAME SOURCES ... DEPS ... [PRIVATE_DEPS ...])
# One static library per component: public headers in include/hallmark/<name>/, code in src/<name>/.
function(hallmark_component name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(hallmark_${name} STATIC ${ARG_SOURCES})
  add_library(hallmark::${name} ALIAS hallmark_${name})
  target_include_directories(hallmark_${name} PUBLIC ${PROJECT_SOURCE_DIR}/include
                                              PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(hallmark_${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

# hallmark_test(NAME SOURCES ... DEPS ...): one GoogleTest binary per library, registered with CTest.
function(hallmark_test name)
  if(NOT HALLMARK_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/test)
  target_compile_definitions(${name} PRIVATE
    HALLMARK_SHARED_DIR="${HALLMARK_SHARED_DIR}"
    HALLMARK_BINARY_DIR="${PROJECT_BINARY_DIR}")
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 600)
endfunction()
