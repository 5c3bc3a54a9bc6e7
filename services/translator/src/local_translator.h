#pragma once

#include "translator.h"

namespace omniroute::translator {

// The conversion library called in-process.
TranslatorPtr MakeLocalTranslator();

}  // namespace omniroute::translator
