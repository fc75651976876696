// SPDX-License-Identifier: Apache-2.0

//go:build !inclustermetrics && (incluster || !(clientgo || controllerruntime))

package main

import "github.com/incluster/incluster/pkg/controller"

const mode = "incluster"

func managerOptions() []controller.Option { return nil }
