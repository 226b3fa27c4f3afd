// letterbox webmail
"use strict";
