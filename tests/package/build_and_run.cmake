# cmake -DSOURCE=<dir> -DBINARY=<dir> -DARGS=<list> -P build_and_run.cmake
# Configures, builds and runs one consumer project; fails on any step.
file(REMOVE_RECURSE ${BINARY})
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE} -B ${BINARY} -G Ninja ${ARGS} COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BINARY} COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${BINARY}/consumer COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${BINARY}/consumer_modules COMMAND_ERROR_IS_FATAL ANY)
