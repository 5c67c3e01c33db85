/*
 * Server discovery for `popbridge add` (issue 3).  Not written yet.
 */
#include "bridge.h"
