# liballoyforge: the one library an application links, made of the component libraries' object
# files (src/*: nothing is compiled twice), exported as AlloyForge::alloyforge for find_package
# and described by alloyforge.pc for pkg-config. Static by default; with BUILD_SHARED_LIBS a
# shared library whose exported symbols are only the af:: C++ API and the af_* C API
# (cmake/alloyforge.map): the third-party code linked into it (PCRE2, image and audio decoders,
# nlohmann::json, standard-library instantiations) stays hidden.
set(af_components af_core af_backend af_ops af_io af_tokenizer af_modalities af_nn af_models
                  af_convert af_runtime)
if(TARGET af_c)
  list(APPEND af_components af_c)
endif()
set(af_objects)
foreach(component IN LISTS af_components)
  list(APPEND af_objects $<TARGET_OBJECTS:${component}>)
endforeach()
add_library(alloyforge ${af_objects})
# Made of objects only: tell CMake (and C programs linking the static archive) it is C++.
set_target_properties(alloyforge PROPERTIES LINKER_LANGUAGE CXX)
add_library(AlloyForge::alloyforge ALIAS alloyforge)
set_target_properties(alloyforge PROPERTIES VERSION ${PROJECT_VERSION}
                      SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
include(GNUInstallDirs)
target_include_directories(alloyforge PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
                           $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
# The public headers use C++20 (std::span, designated initialisers) and nlohmann::json
# (af/tokenizer/chat_template.hpp).
target_compile_features(alloyforge PUBLIC cxx_std_20)
target_link_libraries(alloyforge PUBLIC nlohmann_json::nlohmann_json Threads::Threads)

# The libraries the components link (pkg-config names where Debian ships a .pc file).
find_package(PkgConfig REQUIRED)
set(af_pc_modules libpcre2-32 libjpeg libpng libwebp libwebpdemux sndfile soxr fftw3 zlib)
if(AF_VIDEO)
  list(APPEND af_pc_modules libavformat libavcodec libswscale libavutil)
endif()
pkg_check_modules(AF_PKG_DEPS REQUIRED ${af_pc_modules})
set(af_plain_deps gif stb)
if(BUILD_SHARED_LIBS)
  target_link_libraries(alloyforge PRIVATE ${AF_PKG_DEPS_LINK_LIBRARIES} ${af_plain_deps})
  target_link_options(alloyforge PRIVATE
                      "-Wl,--version-script=${PROJECT_SOURCE_DIR}/cmake/alloyforge.map"
                      "-Wl,--no-undefined")
  set_property(TARGET alloyforge APPEND PROPERTY LINK_DEPENDS
               ${PROJECT_SOURCE_DIR}/cmake/alloyforge.map)
else()
  # A static archive: its users link what its objects need (plain names keep the exported
  # target free of this build's paths).
  target_link_libraries(alloyforge PUBLIC ${AF_PKG_DEPS_LIBRARIES} ${af_plain_deps})
endif()

if(NOT AF_INSTALL)
  return()
endif()
include(CMakePackageConfigHelpers)
set(af_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/AlloyForge)
install(TARGETS alloyforge EXPORT AlloyForgeTargets)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/af TYPE INCLUDE)
install(EXPORT AlloyForgeTargets NAMESPACE AlloyForge:: DESTINATION ${af_cmake_dir})
if(BUILD_SHARED_LIBS OR CMAKE_POSITION_INDEPENDENT_CODE)
  set(AF_PACKAGE_PIC ON)
else()
  set(AF_PACKAGE_PIC OFF)
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/AlloyForgeConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/AlloyForgeConfig.cmake
                              INSTALL_DESTINATION ${af_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/AlloyForgeConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/AlloyForgeConfig.cmake
              ${PROJECT_BINARY_DIR}/AlloyForgeConfigVersion.cmake DESTINATION ${af_cmake_dir})
# pkg-config: the static archive's own dependencies go to Libs.private (pkg-config --static).
# The audio libraries go in as plain -l flags, not Requires.private: `pkg-config --static` would
# pull their own private dependencies (libsndfile's -lmp3lame, -lFLAC, ...), whose static or dev
# files a system need not have, while linking the shared libsndfile/libsoxr/libfftw3 needs none.
set(af_pc_required_modules ${af_pc_modules})
list(REMOVE_ITEM af_pc_required_modules sndfile soxr fftw3 libavformat libavcodec libswscale
            libavutil)
list(JOIN af_pc_required_modules " " AF_PC_REQUIRES_PRIVATE)
set(AF_PC_LIBS_PRIVATE "-lsndfile -lsoxr -lfftw3 -lgif -lstb -lstdc++ -lm -pthread")
if(AF_VIDEO)  # ffmpeg's static dependencies are many; its shared libraries need none
  string(PREPEND AF_PC_LIBS_PRIVATE "-lavformat -lavcodec -lswscale -lavutil ")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/alloyforge.pc.in ${PROJECT_BINARY_DIR}/alloyforge.pc
               @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/alloyforge.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
