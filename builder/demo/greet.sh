#!/bin/sh
echo "@GREETING@ from an image kiln built"
